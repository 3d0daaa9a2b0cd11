//! From what the user typed (`oss://bucket/prefix`, `--endpoint`, `--region`, environment
//! credentials) to a connected [`ObjectStore`].
//!
//! Rules, and why:
//! - **URLs** are `oss://bucket[/path]` or `s3://bucket[/path]`. The path is taken
//!   literally (no percent-decoding): users type keys as they are, spaces included.
//!   Bucket names are checked here, before any request, because a bad name otherwise shows
//!   up as a confusing DNS or TLS error from the virtual-hosted host name.
//! - **OSS endpoint**: `https://oss-<region>.aliyuncs.com` from `--region`. A region typed as
//!   `oss-cn-hangzhou` (the endpoint label) is corrected to `cn-hangzhou` with a warning: the
//!   service refuses the `oss-` form in the signature scope (EC 0002-00000226) and the intent
//!   is unambiguous. With `--endpoint` on `*.aliyuncs.com` the region is inferred from the
//!   host (`oss-<r>.`, `oss-<r>-internal.`, `<r>.oss.`), so `--endpoint
//!   oss-cn-beijing-internal.aliyuncs.com` alone is enough.
//! - **S3 endpoint**: `https://s3.<region>.amazonaws.com`, region default `us-east-1` (what
//!   the AWS CLI assumes).
//! - **Endpoints** may omit the scheme; https is the default (plain http only when asked).
//! - **Addressing**: path style for IP addresses and `localhost` (there is no DNS name to
//!   put the bucket in), for S3 buckets with dots (their virtual host fails TLS wildcard
//!   matching), or with `--path-style`; virtual-hosted otherwise, because OSS refuses path
//!   style for ordinary buckets (SecondLevelDomainForbidden).
//! - **Credentials** come only from the environment (`OSS_*` for `oss://`, `AWS_*` for
//!   `s3://`), never from options, so they stay out of `ps` and shell history. The
//!   environment is injected so tests never touch the process environment.

use std::net::IpAddr;
use std::sync::Arc;

use crate::cli::StoreArgs;
use crate::store::http::{HttpConfig, HttpStore};
use crate::store::retry::{RetryConfig, RetryingStore};
use crate::store::{Credentials, ObjectStore};

/// Which protocol family a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `oss://`: OSS V4 signatures, OSS endpoints, `OSS_*` credentials.
    Oss,
    /// `s3://`: S3 SigV4, `AWS_*` credentials.
    S3,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Oss => "oss",
            Scheme::S3 => "s3",
        }
    }
}

/// A parsed `oss://bucket/prefix` or `s3://bucket/prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreUrl {
    pub scheme: Scheme,
    pub bucket: String,
    /// Key or prefix below the bucket, without a leading `/`; may be empty.
    pub path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}/{}",
            self.scheme.as_str(),
            self.bucket,
            self.path
        )
    }
}

impl StoreUrl {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(invalid(format!(
                "{s:?} is not a bucket URL: expected oss://bucket[/path] or s3://bucket[/path]"
            )));
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "oss" => Scheme::Oss,
            "s3" => Scheme::S3,
            "http" | "https" => {
                return Err(invalid(format!(
                    "{s:?}: use oss://bucket[/path] or s3://bucket[/path] and give the server \
                     with --endpoint"
                )))
            }
            other => {
                return Err(invalid(format!(
                    "{s:?}: unsupported scheme {other:?} (use oss:// or s3://)"
                )))
            }
        };
        let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid(format!(
                "{s:?}: missing bucket name (expected {}://bucket[/path])",
                scheme.as_str()
            )));
        }
        validate_bucket(scheme, bucket)
            .map_err(|why| invalid(format!("{s:?}: invalid bucket name {bucket:?}: {why}")))?;
        Ok(StoreUrl {
            scheme,
            bucket: bucket.to_string(),
            path: path.trim_start_matches('/').to_string(),
        })
    }
}

/// OSS: 3-63 of `[a-z0-9-]`, starting and ending with a letter or digit. S3 also allows
/// dots (not doubled, not next to a hyphen, not an IP address).
fn validate_bucket(scheme: Scheme, b: &str) -> Result<(), &'static str> {
    if b.len() < 3 || b.len() > 63 {
        return Err("must be 3 to 63 characters long");
    }
    let allowed = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '-'
            || (scheme == Scheme::S3 && c == '.')
    };
    if !b.chars().all(allowed) {
        return Err(match scheme {
            Scheme::Oss => "only lowercase letters, digits and hyphens are allowed",
            Scheme::S3 => "only lowercase letters, digits, dots and hyphens are allowed",
        });
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge_ok(b.chars().next()) || !edge_ok(b.chars().last()) {
        return Err("must start and end with a lowercase letter or digit");
    }
    if b.contains("..") || b.contains(".-") || b.contains("-.") {
        return Err("dots may not be doubled or next to a hyphen");
    }
    if b.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("must not look like an IP address");
    }
    Ok(())
}

/// How requests are authenticated.
#[derive(Clone, Debug)]
pub enum Auth {
    OssV4(Credentials),
    S3V4(Credentials),
    Anonymous,
}

/// Everything needed to talk to one bucket.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub scheme: Scheme,
    pub bucket: String,
    /// `http` or `https` plus host[:port], no trailing slash, e.g. `https://oss-cn-hangzhou.aliyuncs.com`.
    pub endpoint: String,
    pub region: String,
    pub path_style: bool,
    pub auth: Auth,
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

/// Region of an OSS endpoint host on `aliyuncs.com`, when the host says it:
/// `oss-<r>.aliyuncs.com`, `oss-<r>-internal.aliyuncs.com`, `<r>.oss.aliyuncs.com`.
/// Acceleration endpoints (`oss-accelerate*`) name no region.
pub fn oss_region_from_host(host: &str) -> Option<String> {
    let host = host.strip_suffix(".aliyuncs.com")?;
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

fn non_empty(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

/// Credentials from the environment for `scheme`, or a message naming what is missing.
fn credentials_from_env(
    scheme: Scheme,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, ConfigError> {
    let (id_var, secret_var, token_var) = match scheme {
        Scheme::Oss => (
            "OSS_ACCESS_KEY_ID",
            "OSS_ACCESS_KEY_SECRET",
            "OSS_SESSION_TOKEN",
        ),
        Scheme::S3 => (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ),
    };
    let id = non_empty(env, id_var);
    let secret = non_empty(env, secret_var);
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Credentials {
            access_key_id: id.trim().to_string(),
            access_key_secret: secret.trim().to_string(),
            session_token: non_empty(env, token_var).map(|t| t.trim().to_string()),
        }),
        (id, secret) => {
            let missing: Vec<&str> = [(id.is_none(), id_var), (secret.is_none(), secret_var)]
                .into_iter()
                .filter_map(|(m, v)| m.then_some(v))
                .collect();
            Err(invalid(format!(
                "no credentials for {}://: {} not set in the environment (set {id_var} and \
                 {secret_var}, plus {token_var} for temporary credentials), or pass \
                 --no-sign-request for a public bucket",
                scheme.as_str(),
                missing.join(" and ")
            )))
        }
    }
}

impl StoreConfig {
    /// Resolve endpoint, region, addressing style and credentials. `env` reads environment
    /// variables (injected so tests do not touch the process environment).
    pub fn resolve(
        url: &StoreUrl,
        args: &StoreArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut endpoint = args.endpoint.as_deref().map(Endpoint::parse).transpose()?;
        // `--endpoint bucket.oss-cn-hangzhou.aliyuncs.com` (the bucket's own host, as the
        // console shows it) would otherwise become `bucket.bucket.oss-...`.
        if let Some(e) = endpoint.as_mut() {
            let own = format!("{}.", url.bucket);
            let service = e.host.ends_with(".aliyuncs.com") || e.host.ends_with(".amazonaws.com");
            if service && e.host.starts_with(&own) && !args.path_style {
                let stripped = e.host[own.len()..].to_string();
                tracing::warn!(
                    "--endpoint {} names the bucket's own host; using {stripped}",
                    e.host
                );
                e.host = stripped;
            }
        }
        let (endpoint, region) = match url.scheme {
            Scheme::Oss => {
                let given = args
                    .region
                    .as_deref()
                    .map(normalize_oss_region)
                    .transpose()?;
                let inferred = endpoint
                    .as_ref()
                    .and_then(|e| oss_region_from_host(&e.host));
                if let (Some(g), Some(i)) = (&given, &inferred) {
                    if g != i {
                        tracing::warn!(
                            "--region {g} differs from the endpoint's region {i}; signing \
                             with {g} (OSS refuses a scope region that is not the bucket's)"
                        );
                    }
                }
                match (endpoint, given.or(inferred)) {
                    (Some(e), Some(r)) => (e, r),
                    (Some(e), None) if args.no_sign_request => (e, String::new()),
                    (Some(e), None) => {
                        return Err(invalid(format!(
                            "--region is required with --endpoint {} for oss:// (the region id, \
                             e.g. cn-hangzhou, is part of the V4 signature)",
                            e.url()
                        )))
                    }
                    (None, Some(r)) => (
                        Endpoint {
                            scheme: "https".into(),
                            host: format!("oss-{r}.aliyuncs.com"),
                            port: None,
                            is_ip_or_local: false,
                        },
                        r,
                    ),
                    (None, None) => {
                        return Err(invalid(
                            "oss:// needs --region (e.g. cn-hangzhou) or --endpoint \
                             (e.g. oss-cn-hangzhou.aliyuncs.com)",
                        ))
                    }
                }
            }
            Scheme::S3 => {
                let given = match args.region.as_deref() {
                    Some(r) => {
                        let r = r.trim().to_ascii_lowercase();
                        if !valid_region(&r) {
                            return Err(invalid(format!(
                                "--region {r:?} is not a region id (expected e.g. us-east-1)"
                            )));
                        }
                        Some(r)
                    }
                    None => None,
                };
                let inferred = endpoint.as_ref().and_then(|e| s3_region_from_host(&e.host));
                let region = given
                    .or(inferred)
                    .unwrap_or_else(|| "us-east-1".to_string());
                let endpoint = endpoint.unwrap_or_else(|| Endpoint {
                    scheme: "https".into(),
                    host: format!("s3.{region}.amazonaws.com"),
                    port: None,
                    is_ip_or_local: false,
                });
                (endpoint, region)
            }
        };
        let path_style = args.path_style
            || endpoint.is_ip_or_local
            || (url.scheme == Scheme::S3 && url.bucket.contains('.'));
        let auth = if args.no_sign_request {
            Auth::Anonymous
        } else {
            let creds = credentials_from_env(url.scheme, env)?;
            match url.scheme {
                Scheme::Oss => Auth::OssV4(creds),
                Scheme::S3 => Auth::S3V4(creds),
            }
        };
        Ok(StoreConfig {
            scheme: url.scheme,
            bucket: url.bucket.clone(),
            endpoint: endpoint.url(),
            region,
            path_style,
            auth,
        })
    }

    /// A stable identity of (endpoint, bucket) for cache entry names.
    pub fn namespace(&self) -> String {
        format!("{}/{}", self.endpoint, self.bucket)
    }
}

/// The store every command uses: the HTTP client wrapped in retries, default settings.
pub fn connect(cfg: &StoreConfig) -> Result<Arc<dyn ObjectStore>, ConfigError> {
    connect_with(cfg, HttpConfig::default(), RetryConfig::default())
}

/// [`connect`] with explicit timeouts and retry policy (tests use short ones).
pub fn connect_with(
    cfg: &StoreConfig,
    http: HttpConfig,
    retry: RetryConfig,
) -> Result<Arc<dyn ObjectStore>, ConfigError> {
    let store = HttpStore::new(cfg.clone(), http)?;
    Ok(Arc::new(RetryingStore::new(Arc::new(store), retry)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn args(endpoint: Option<&str>, region: Option<&str>) -> StoreArgs {
        StoreArgs {
            endpoint: endpoint.map(String::from),
            region: region.map(String::from),
            no_sign_request: false,
            path_style: false,
        }
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const OSS_ENV: &[(&str, &str)] =
        &[("OSS_ACCESS_KEY_ID", "ak"), ("OSS_ACCESS_KEY_SECRET", "sk")];
    const AWS_ENV: &[(&str, &str)] = &[
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "tok"),
    ];

    fn resolve(url: &str, a: StoreArgs, env: &[(&str, &str)]) -> Result<StoreConfig, String> {
        let u = StoreUrl::parse(url).map_err(|e| e.to_string())?;
        StoreConfig::resolve(&u, &a, &env_of(env)).map_err(|e| e.to_string())
    }

    #[test]
    fn url_parsing() {
        let u = StoreUrl::parse("oss://my-bucket/dir/sub/file name.bin").unwrap();
        assert_eq!(u.scheme, Scheme::Oss);
        assert_eq!(u.bucket, "my-bucket");
        assert_eq!(u.path, "dir/sub/file name.bin");
        let u = StoreUrl::parse("s3://bucket").unwrap();
        assert_eq!(
            (u.scheme, u.bucket.as_str(), u.path.as_str()),
            (Scheme::S3, "bucket", "")
        );
        let u = StoreUrl::parse("oss://bucket/").unwrap();
        assert_eq!(u.path, "");
        let u = StoreUrl::parse("OSS://bucket//prefix/").unwrap();
        assert_eq!((u.scheme, u.path.as_str()), (Scheme::Oss, "prefix/"));
        let u = StoreUrl::parse("s3://my.dotted.bucket/k").unwrap();
        assert_eq!(u.bucket, "my.dotted.bucket");
    }

    #[test]
    fn url_errors_are_clear() {
        let err = |s: &str| StoreUrl::parse(s).unwrap_err().to_string();
        assert!(
            err("oss://").contains("missing bucket"),
            "{}",
            err("oss://")
        );
        assert!(err("oss:///key").contains("missing bucket"));
        assert!(err("gs://bucket/x").contains("unsupported scheme \"gs\""));
        assert!(err("https://bucket.oss-cn-hangzhou.aliyuncs.com/x").contains("--endpoint"));
        assert!(err("bucket/key").contains("expected oss://bucket"));
        assert!(err("oss://My_Bucket/x").contains("invalid bucket name"));
        assert!(err("oss://ab").contains("3 to 63"));
        assert!(err("oss://-abc").contains("start and end"));
        assert!(err("oss://a.b.c").contains("only lowercase letters, digits and hyphens"));
        assert!(err("s3://a..b").contains("doubled"));
        assert!(err("s3://192.168.1.1").contains("IP address"));
        assert!(err(&format!("oss://{}", "a".repeat(64))).contains("3 to 63"));
    }

    #[test]
    fn oss_default_endpoint_from_region() {
        let c = resolve("oss://b-1/x", args(None, Some("cn-hangzhou")), OSS_ENV).unwrap();
        assert_eq!(c.endpoint, "https://oss-cn-hangzhou.aliyuncs.com");
        assert_eq!(c.region, "cn-hangzhou");
        assert!(!c.path_style);
        assert_eq!(c.namespace(), "https://oss-cn-hangzhou.aliyuncs.com/b-1");
        match c.auth {
            Auth::OssV4(cr) => {
                assert_eq!(cr.access_key_id, "ak");
                assert_eq!(cr.access_key_secret, "sk");
                assert_eq!(cr.session_token, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oss_region_label_is_corrected() {
        let c = resolve("oss://bkt", args(None, Some("oss-cn-shanghai")), OSS_ENV).unwrap();
        assert_eq!(c.region, "cn-shanghai");
        assert_eq!(c.endpoint, "https://oss-cn-shanghai.aliyuncs.com");
        let e = resolve("oss://bkt", args(None, Some("cn hangzhou")), OSS_ENV).unwrap_err();
        assert!(e.contains("not a region id"), "{e}");
    }

    #[test]
    fn oss_needs_region_or_endpoint() {
        let e = resolve("oss://bkt", args(None, None), OSS_ENV).unwrap_err();
        assert!(e.contains("--region"), "{e}");
        let e = resolve(
            "oss://bkt",
            args(Some("http://10.0.0.1:9000"), None),
            OSS_ENV,
        )
        .unwrap_err();
        assert!(e.contains("--region is required"), "{e}");
        // Anonymous requests do not sign, so a custom endpoint needs no region.
        let mut a = args(Some("http://10.0.0.1:9000"), None);
        a.no_sign_request = true;
        let c = resolve("oss://bkt", a, &[]).unwrap();
        assert!(matches!(c.auth, Auth::Anonymous));
    }

    #[test]
    fn oss_endpoint_forms_and_region_inference() {
        let c = resolve(
            "oss://bkt",
            args(Some("oss-cn-beijing-internal.aliyuncs.com"), None),
            OSS_ENV,
        )
        .unwrap();
        assert_eq!(c.endpoint, "https://oss-cn-beijing-internal.aliyuncs.com");
        assert_eq!(c.region, "cn-beijing");
        assert!(!c.path_style);

        let c = resolve(
            "oss://bkt",
            args(Some("http://oss-eu-central-1.aliyuncs.com/"), None),
            OSS_ENV,
        )
        .unwrap();
        assert_eq!(c.endpoint, "http://oss-eu-central-1.aliyuncs.com");
        assert_eq!(c.region, "eu-central-1");

        let c = resolve(
            "oss://bkt",
            args(Some("cn-hangzhou.oss.aliyuncs.com"), None),
            OSS_ENV,
        )
        .unwrap();
        assert_eq!(c.region, "cn-hangzhou");

        // Acceleration endpoints name no region.
        let e = resolve(
            "oss://bkt",
            args(Some("oss-accelerate.aliyuncs.com"), None),
            OSS_ENV,
        )
        .unwrap_err();
        assert!(e.contains("--region is required"), "{e}");
        let c = resolve(
            "oss://bkt",
            args(Some("oss-accelerate.aliyuncs.com"), Some("cn-hangzhou")),
            OSS_ENV,
        )
        .unwrap();
        assert_eq!(c.endpoint, "https://oss-accelerate.aliyuncs.com");
        assert_eq!(c.region, "cn-hangzhou");

        // An explicit region wins over the endpoint's.
        let c = resolve(
            "oss://bkt",
            args(Some("oss-cn-beijing.aliyuncs.com"), Some("cn-hangzhou")),
            OSS_ENV,
        )
        .unwrap();
        assert_eq!(c.region, "cn-hangzhou");
    }

    #[test]
    fn bucket_host_as_endpoint_is_reduced_to_the_service_host() {
        let c = resolve(
            "oss://bkt/x",
            args(Some("https://bkt.oss-cn-shenzhen.aliyuncs.com"), None),
            OSS_ENV,
        )
        .unwrap();
        assert_eq!(c.endpoint, "https://oss-cn-shenzhen.aliyuncs.com");
        assert_eq!(c.region, "cn-shenzhen");
        // Another bucket's name in the host is left alone.
        let c = resolve(
            "oss://bkt/x",
            args(Some("other.oss-cn-shenzhen.aliyuncs.com"), None),
            OSS_ENV,
        )
        .unwrap();
        assert_eq!(c.endpoint, "https://other.oss-cn-shenzhen.aliyuncs.com");
    }

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
            s3_region_from_host("s3.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            s3_region_from_host("s3-us-west-2.amazonaws.com").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(s3_region_from_host("minio.local"), None);
    }

    #[test]
    fn endpoint_errors() {
        for (ep, needle) in [
            ("ftp://host", "http or https"),
            ("http://host/bucket", "no path"),
            ("http://user:pw@host", "credentials"),
            ("", "empty"),
        ] {
            let e = resolve("oss://bkt", args(Some(ep), Some("cn-hangzhou")), OSS_ENV).unwrap_err();
            assert!(e.contains(needle), "{ep}: {e}");
        }
    }

    #[test]
    fn path_style_rules() {
        for ep in [
            "http://127.0.0.1:9000",
            "localhost:9000",
            "http://[::1]:9000",
            "10.1.2.3",
        ] {
            let c = resolve("oss://bkt", args(Some(ep), Some("cn-hangzhou")), OSS_ENV).unwrap();
            assert!(c.path_style, "{ep}");
        }
        let c = resolve(
            "oss://bkt",
            args(Some("localhost:9000"), Some("cn-hangzhou")),
            OSS_ENV,
        )
        .unwrap();
        assert_eq!(c.endpoint, "https://localhost:9000");
        let c = resolve(
            "oss://bkt",
            args(Some("http://[::1]:9000"), Some("cn-hangzhou")),
            OSS_ENV,
        )
        .unwrap();
        assert_eq!(c.endpoint, "http://[::1]:9000");
        let c = resolve(
            "oss://bkt",
            args(Some("https://oss.example.com:443"), Some("cn-hangzhou")),
            OSS_ENV,
        )
        .unwrap();
        assert!(!c.path_style);
        assert_eq!(
            c.endpoint, "https://oss.example.com",
            "default port dropped"
        );
        let mut a = args(Some("oss.example.com"), Some("cn-hangzhou"));
        a.path_style = true;
        assert!(resolve("oss://bkt", a, OSS_ENV).unwrap().path_style);
        // S3 buckets with dots cannot be virtual-hosted over TLS.
        assert!(
            resolve("s3://my.bucket", args(None, None), AWS_ENV)
                .unwrap()
                .path_style
        );
        assert!(
            !resolve("s3://my-bucket", args(None, None), AWS_ENV)
                .unwrap()
                .path_style
        );
    }

    #[test]
    fn s3_defaults() {
        let c = resolve("s3://bkt/k", args(None, None), AWS_ENV).unwrap();
        assert_eq!(c.endpoint, "https://s3.us-east-1.amazonaws.com");
        assert_eq!(c.region, "us-east-1");
        match &c.auth {
            Auth::S3V4(cr) => {
                assert_eq!(cr.access_key_id, "AKID");
                assert_eq!(cr.session_token.as_deref(), Some("tok"));
            }
            other => panic!("{other:?}"),
        }
        let c = resolve("s3://bkt", args(None, Some("eu-west-1")), AWS_ENV).unwrap();
        assert_eq!(c.endpoint, "https://s3.eu-west-1.amazonaws.com");
        let c = resolve(
            "s3://bkt",
            args(Some("s3.ap-south-1.amazonaws.com"), None),
            AWS_ENV,
        )
        .unwrap();
        assert_eq!(c.region, "ap-south-1");
        let c = resolve(
            "s3://bkt",
            args(Some("http://127.0.0.1:9000"), None),
            AWS_ENV,
        )
        .unwrap();
        assert_eq!((c.region.as_str(), c.path_style), ("us-east-1", true));
    }

    #[test]
    fn credentials_come_from_the_right_variables() {
        // OSS variables do not sign s3:// requests and vice versa.
        let e = resolve("s3://bkt", args(None, None), OSS_ENV).unwrap_err();
        assert!(
            e.contains("AWS_ACCESS_KEY_ID") && e.contains("AWS_SECRET_ACCESS_KEY"),
            "{e}"
        );
        assert!(e.contains("--no-sign-request"), "{e}");
        let e = resolve("oss://bkt", args(None, Some("cn-hangzhou")), AWS_ENV).unwrap_err();
        assert!(
            e.contains("OSS_ACCESS_KEY_ID and OSS_ACCESS_KEY_SECRET not set"),
            "{e}"
        );
        let e = resolve(
            "oss://bkt",
            args(None, Some("cn-hangzhou")),
            &[("OSS_ACCESS_KEY_ID", "ak"), ("OSS_ACCESS_KEY_SECRET", "  ")],
        )
        .unwrap_err();
        assert!(e.contains("OSS_ACCESS_KEY_SECRET not set"), "{e}");
        assert!(!e.contains("OSS_ACCESS_KEY_ID not"), "{e}");
        let c = resolve(
            "oss://bkt",
            args(None, Some("cn-hangzhou")),
            &[
                ("OSS_ACCESS_KEY_ID", "STS.x"),
                ("OSS_ACCESS_KEY_SECRET", "s"),
                ("OSS_SESSION_TOKEN", "t"),
            ],
        )
        .unwrap();
        match c.auth {
            Auth::OssV4(cr) => assert_eq!(cr.session_token.as_deref(), Some("t")),
            other => panic!("{other:?}"),
        }
        let mut a = args(None, Some("cn-hangzhou"));
        a.no_sign_request = true;
        assert!(matches!(
            resolve("oss://bkt", a, OSS_ENV).unwrap().auth,
            Auth::Anonymous
        ));
    }

    #[test]
    fn debug_output_has_no_secret() {
        let c = resolve("oss://bkt", args(None, Some("cn-hangzhou")), OSS_ENV).unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("\"sk\""), "{text}");
    }
}
