//! From the endpoint, region and addressing style a user gives (any of them may be missing)
//! to the ones a store talks to.
//!
//! Rules, and why:
//! - **OSS endpoint**: `https://oss-<region>.aliyuncs.com` from `--region`. A region typed as
//!   `oss-cn-hangzhou` (the endpoint label) is corrected to `cn-hangzhou` with a warning: the
//!   service refuses the `oss-` form in the signature scope (EC 0002-00000226) and the intent
//!   is unambiguous. With `--endpoint` on `*.aliyuncs.com` the region is inferred from the
//!   host (`oss-<r>.`, `oss-<r>-internal.`, `<r>.oss.`), so `--endpoint
//!   oss-cn-beijing-internal.aliyuncs.com` alone is enough.
//! - **S3 endpoint**: `https://s3.<region>.amazonaws.com`, region default `us-east-1` (what
//!   the AWS CLI assumes).
//! - **Endpoints** may omit the scheme; https is the default (plain http only when asked).
//!   The bucket's own host (`bucket.oss-cn-hangzhou.aliyuncs.com`, as the console shows it)
//!   is reduced to the service host.
//! - **Addressing**: path style for IP addresses and `localhost` (there is no DNS name to
//!   put the bucket in), for S3 buckets with dots (their virtual host fails TLS wildcard
//!   matching), or with `--path-style`; virtual-hosted otherwise, because OSS refuses path
//!   style for ordinary buckets (SecondLevelDomainForbidden).

use std::net::IpAddr;

use super::config::{invalid, ConfigError, Scheme};

/// The region the AWS CLI assumes when none is given.
const DEFAULT_S3_REGION: &str = "us-east-1";

/// Where the user says a bucket is, as typed.
#[derive(Clone, Copy, Debug)]
pub struct Given<'a> {
    pub scheme: Scheme,
    pub bucket: &'a str,
    /// `--endpoint`: a URL or a bare host.
    pub endpoint: Option<&'a str>,
    /// `--region`.
    pub region: Option<&'a str>,
    /// `--path-style`.
    pub path_style: bool,
    /// Requests will be signed: OSS then needs a region, which is part of the signature.
    pub signed: bool,
}

/// What the rules make of [`Given`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// `http` or `https` plus host[:port], no trailing slash.
    pub endpoint: String,
    /// Empty only for unsigned requests to an endpoint that names no region.
    pub region: String,
    pub path_style: bool,
}

/// Apply the rules of the module comment.
pub fn locate(given: &Given<'_>) -> Result<Location, ConfigError> {
    let endpoint = given
        .endpoint
        .map(Endpoint::parse)
        .transpose()?
        .map(|e| without_own_bucket(e, given.bucket, given.path_style));
    let (endpoint, region) = match given.scheme {
        Scheme::Oss => oss_endpoint_and_region(endpoint, given)?,
        Scheme::S3 => s3_endpoint_and_region(endpoint, given.region)?,
    };
    let path_style = given.path_style
        || endpoint.is_ip_or_local
        || (given.scheme == Scheme::S3 && given.bucket.contains('.'));
    Ok(Location {
        endpoint: endpoint.url(),
        region,
        path_style,
    })
}

/// An endpoint split into what the client needs.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    /// `http` or `https`.
    scheme: String,
    /// Lower-case host, IPv6 in brackets.
    host: String,
    port: Option<u16>,
    /// The host is an IP address or `localhost`: no virtual-hosted addressing possible.
    is_ip_or_local: bool,
}

impl Endpoint {
    /// A service's own endpoint, on the default port.
    fn https(host: String) -> Self {
        Endpoint {
            scheme: "https".into(),
            host,
            port: None,
            is_ip_or_local: false,
        }
    }

    fn parse(raw: &str) -> Result<Self, ConfigError> {
        let trimmed = raw.trim().trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(invalid("--endpoint is empty"));
        }
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("https://{trimmed}")
        };
        let url = reqwest::Url::parse(&with_scheme).map_err(|e| {
            invalid(format!(
                "--endpoint {raw:?} is not a valid URL or host: {e}"
            ))
        })?;
        let scheme = url.scheme().to_string();
        if scheme != "http" && scheme != "https" {
            return Err(invalid(format!(
                "--endpoint {raw:?}: scheme must be http or https, not {scheme:?}"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(format!(
                "--endpoint {raw:?}: credentials do not belong in the endpoint; use the environment"
            )));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(format!(
                "--endpoint {raw:?}: give only scheme, host and port (no path or query); \
                 the bucket goes in the oss:// or s3:// URL"
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid(format!("--endpoint {raw:?} has no host")))?
            .to_ascii_lowercase();
        let is_ip_or_local = host == "localhost"
            || host.ends_with(".localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok();
        Ok(Endpoint {
            scheme,
            host,
            port: url.port(),
            is_ip_or_local,
        })
    }

    fn url(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{}", self.scheme, self.host, p),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

/// `--endpoint bucket.oss-cn-hangzhou.aliyuncs.com` (the bucket's own host) would otherwise
/// become `bucket.bucket.oss-...`: on the services' own domains, drop the bucket label.
fn without_own_bucket(mut e: Endpoint, bucket: &str, path_style: bool) -> Endpoint {
    let own = format!("{bucket}.");
    let service = e.host.ends_with(".aliyuncs.com") || e.host.ends_with(".amazonaws.com");
    if service && e.host.starts_with(&own) && !path_style {
        let stripped = e.host[own.len()..].to_string();
        tracing::warn!(
            "--endpoint {} names the bucket's own host; using {stripped}",
            e.host
        );
        e.host = stripped;
    }
    e
}

/// OSS: the region is part of the signature, so a signed request needs one, from
/// `--region` or the endpoint's host; the endpoint defaults to the region's public one.
fn oss_endpoint_and_region(
    endpoint: Option<Endpoint>,
    given: &Given<'_>,
) -> Result<(Endpoint, String), ConfigError> {
    let region = oss_region(given.region, endpoint.as_ref())?;
    match (endpoint, region) {
        (Some(e), Some(r)) => Ok((e, r)),
        (Some(e), None) if !given.signed => Ok((e, String::new())),
        (Some(e), None) => Err(invalid(format!(
            "--region is required with --endpoint {} for oss:// (the region id, \
             e.g. cn-hangzhou, is part of the V4 signature{})",
            e.url(),
            if e.host.contains("oss-data-acc") {
                "; an OSS accelerator endpoint names a zone, not the bucket's region"
            } else {
                ", and this endpoint does not name one"
            }
        ))),
        (None, Some(r)) => Ok((Endpoint::https(format!("oss-{r}.aliyuncs.com")), r)),
        (None, None) => Err(invalid(
            "oss:// needs --region (e.g. cn-hangzhou) or --endpoint \
             (e.g. oss-cn-hangzhou.aliyuncs.com)",
        )),
    }
}

/// The OSS region to sign with: `--region` (normalized) wins over the endpoint's own, with
/// a warning when the two differ.
fn oss_region(
    given: Option<&str>,
    endpoint: Option<&Endpoint>,
) -> Result<Option<String>, ConfigError> {
    let given = given.map(normalize_oss_region).transpose()?;
    let inferred = endpoint.and_then(|e| oss_region_from_host(&e.host));
    if let (Some(g), Some(i)) = (&given, &inferred) {
        if g != i {
            tracing::warn!(
                "--region {g} differs from the endpoint's region {i}; signing \
                 with {g} (OSS refuses a scope region that is not the bucket's)"
            );
        }
    }
    Ok(given.or(inferred))
}

/// S3: `--region`, else the endpoint's, else [`DEFAULT_S3_REGION`]; the endpoint defaults to
/// the region's AWS one.
fn s3_endpoint_and_region(
    endpoint: Option<Endpoint>,
    given: Option<&str>,
) -> Result<(Endpoint, String), ConfigError> {
    let given = given.map(normalize_s3_region).transpose()?;
    let inferred = endpoint.as_ref().and_then(|e| s3_region_from_host(&e.host));
    let region = given
        .or(inferred)
        .unwrap_or_else(|| DEFAULT_S3_REGION.to_string());
    let endpoint =
        endpoint.unwrap_or_else(|| Endpoint::https(format!("s3.{region}.amazonaws.com")));
    Ok((endpoint, region))
}

/// Region of an OSS endpoint host on `aliyuncs.com`, when the host says it:
/// `oss-<r>.aliyuncs.com`, `oss-<r>-internal.aliyuncs.com`, `<r>.oss.aliyuncs.com`.
/// Acceleration endpoints (`oss-accelerate*`) name no region, nor do the OSS accelerator's
/// (`<zone>-internal.oss-data-acc.aliyuncs.com`: a zone such as `cn-hangzhou-j`, whose
/// region cannot be told from it safely), so those need `--region`.
fn oss_region_from_host(host: &str) -> Option<String> {
    let host = host.strip_suffix(".aliyuncs.com")?;
    if host.ends_with("oss-data-acc") {
        return None;
    }
    // Last label group before aliyuncs.com; a bucket prefix (`bucket.oss-...`) is ignored.
    let labels: Vec<&str> = host.split('.').collect();
    let region = match labels.as_slice() {
        [.., r, "oss"] => r.to_string(),
        [.., last] => {
            let r = last.strip_prefix("oss-")?;
            r.strip_suffix("-internal").unwrap_or(r).to_string()
        }
        [] => return None,
    };
    if region.is_empty() || region.starts_with("accelerate") || !valid_region(&region) {
        return None;
    }
    Some(region)
}

/// Region of an AWS S3 endpoint host: `s3.<r>.amazonaws.com` or `s3-<r>.amazonaws.com`.
fn s3_region_from_host(host: &str) -> Option<String> {
    let host = host.strip_suffix(".amazonaws.com")?;
    let labels: Vec<&str> = host.split('.').collect();
    let region = match labels.as_slice() {
        [.., "s3", r] => r.to_string(),
        [.., last] => last.strip_prefix("s3-")?.to_string(),
        [] => return None,
    };
    valid_region(&region).then_some(region)
}

fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Normalize a `--region` value for OSS: `oss-cn-hangzhou` becomes `cn-hangzhou` (warned).
fn normalize_oss_region(raw: &str) -> Result<String, ConfigError> {
    let r = raw.trim().to_ascii_lowercase();
    let r = match r.strip_prefix("oss-") {
        Some(stripped) => {
            let stripped = stripped.strip_suffix("-internal").unwrap_or(stripped);
            tracing::warn!(
                "--region {raw:?} is an endpoint label; using region id {stripped:?} \
                 (OSS rejects the oss- prefix in signatures)"
            );
            stripped.to_string()
        }
        None => r,
    };
    if !valid_region(&r) {
        return Err(invalid(format!(
            "--region {raw:?} is not a region id (expected e.g. cn-hangzhou)"
        )));
    }
    Ok(r)
}

/// Normalize a `--region` value for S3: trimmed, lower case.
fn normalize_s3_region(raw: &str) -> Result<String, ConfigError> {
    let r = raw.trim().to_ascii_lowercase();
    if !valid_region(&r) {
        return Err(invalid(format!(
            "--region {r:?} is not a region id (expected e.g. us-east-1)"
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_inference_helpers() {
        assert_eq!(
            oss_region_from_host("oss-cn-hangzhou.aliyuncs.com").as_deref(),
            Some("cn-hangzhou")
        );
        assert_eq!(
            oss_region_from_host("bkt.oss-ap-southeast-1-internal.aliyuncs.com").as_deref(),
            Some("ap-southeast-1")
        );
        assert_eq!(
            oss_region_from_host("oss-accelerate-overseas.aliyuncs.com"),
            None
        );
        assert_eq!(oss_region_from_host("example.com"), None);
        assert_eq!(
            oss_region_from_host("cn-hangzhou-j-internal.oss-data-acc.aliyuncs.com"),
            None
        );
        assert_eq!(
            oss_region_from_host("bkt.cn-hangzhou-j-internal.oss-data-acc.aliyuncs.com"),
            None
        );
        assert_eq!(
            s3_region_from_host("s3.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            s3_region_from_host("s3-us-west-2.amazonaws.com").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(s3_region_from_host("minio.local"), None);
    }
}
