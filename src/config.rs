//! From what the user typed (`oss://bucket/prefix`, `--endpoint`, `--region`, environment
//! credentials) to a connected [`ObjectStore`], one way: the store's own settings
//! ([`StoreConfig`]) and their rules live in [`crate::store`], which knows nothing of this.
//!
//! - **URLs** are `oss://bucket[/path]` or `s3://bucket[/path]`. The path is taken
//!   literally (no percent-decoding): users type keys as they are, spaces included.
//!   Bucket names are checked here, before any request, because a bad name otherwise shows
//!   up as a confusing DNS or TLS error from the virtual-hosted host name.
//! - **Options** ([`StoreArgs`], shared by every command that talks to a store) go through
//!   the endpoint, region and addressing rules of [`crate::store::endpoint`].
//! - **Credentials** come from the chain in [`crate::store::credentials`] (environment,
//!   RRSA, files, ECS RAM role, a credential process); the options here only choose or
//!   point it (`--profile`, `--ram-role`, `--credential-process`, endpoints), never carry a
//!   secret, so secrets stay out of `ps` and shell history.

use std::sync::Arc;

use std::time::Duration;

use crate::store::config::{invalid, Auth, ConfigError, Scheme, StoreConfig};
use crate::store::credentials::{self, process, ChainOptions, Env, System};
use crate::store::endpoint::{self, Given};
use crate::store::http::{HttpConfig, HttpStore};
use crate::store::retry::{RetryConfig, RetryingStore};
use crate::store::tls::Trust;
use crate::store::ObjectStore;
use crate::units::{format_duration, parse_duration};

/// Where the bucket lives and how to sign: shared by every command that talks to a store.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Endpoint URL or host, e.g. `oss-cn-hangzhou-internal.aliyuncs.com` or
    /// `http://127.0.0.1:9000`. Default: derived from --region (OSS) or AWS's endpoint (S3).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Region id, e.g. `cn-hangzhou` (OSS) or `us-east-1` (S3). Used for signing and for the
    /// default endpoint.
    #[arg(long)]
    pub region: Option<String>,
    /// Send unsigned requests (public buckets); ignores credentials in the environment.
    #[arg(long)]
    pub no_sign_request: bool,
    /// Address the bucket in the path (`endpoint/bucket/key`) instead of the host name.
    /// Default: path style for IP addresses and localhost, virtual-hosted otherwise.
    #[arg(long)]
    pub path_style: bool,
    /// Credentials from this profile of ~/.aliyun/config.json or ~/.alibabacloud/credentials
    /// (default: ALIBABA_CLOUD_PROFILE, else the credential chain, docs/credentials.md).
    #[arg(long, conflicts_with_all = ["ram_role", "credential_process", "no_sign_request"])]
    pub profile: Option<String>,
    /// Credentials of this ECS instance RAM role, from the instance metadata service.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["credential_process", "no_sign_request"])]
    pub ram_role: Option<String>,
    /// Run this command (through `sh -c`) for credentials: it prints JSON with AccessKeyId,
    /// AccessKeySecret, SecurityToken and Expiration; run again before they expire.
    #[arg(long, value_name = "CMD", conflicts_with = "no_sign_request")]
    pub credential_process: Option<String>,
    /// How long the credential process may take before it is killed.
    #[arg(long, value_parser = parse_duration, default_value = format_duration(process::DEFAULT_TIMEOUT))]
    pub credential_process_timeout: Duration,
    /// The ECS metadata service (default http://100.100.100.200).
    #[arg(long, value_name = "URL", env = "OSSMOUNT_METADATA_ENDPOINT")]
    pub metadata_endpoint: Option<String>,
    /// The STS endpoint for RRSA and RAM role ARN (default: sts.aliyuncs.com, or from
    /// ALIBABA_CLOUD_STS_REGION and ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED).
    #[arg(long, value_name = "URL", env = "OSSMOUNT_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,
    /// Also trust the CA certificates in this PEM file for HTTPS (on top of the bundled
    /// roots, the system store and AWS_CA_BUNDLE; docs/mount.md, "HTTPS").
    #[arg(long, value_name = "FILE")]
    pub ca_bundle: Option<std::path::PathBuf>,
}

impl StoreArgs {
    /// The credential chain's options from these arguments; `env` reads the environment
    /// (the CA variables, so credential clients trust what [`Self::http_config`] trusts).
    pub fn chain_options(&self, env: &Env<'_>) -> ChainOptions {
        ChainOptions {
            trust: Trust::resolve(self.ca_bundle.as_deref(), env),
            profile: self.profile.clone(),
            ram_role: self.ram_role.clone(),
            credential_process: self.credential_process.clone(),
            credential_process_timeout: Some(self.credential_process_timeout),
            metadata_endpoint: self.metadata_endpoint.clone(),
            sts_endpoint: self.sts_endpoint.clone(),
            ..Default::default()
        }
    }

    /// The HTTP client's settings for these options; `env` reads the environment
    /// (`AWS_CA_BUNDLE`, `SSL_CERT_FILE`).
    pub fn http_config(&self, env: &Env<'_>) -> HttpConfig {
        HttpConfig {
            trust: Trust::resolve(self.ca_bundle.as_deref(), env),
            ..HttpConfig::default()
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

/// Resolve endpoint, region, addressing style and credentials. `sys` is the environment,
/// files and clock (injected so tests do not touch the process environment). Credentials
/// are fetched here once: a source that fails is this function's error.
pub fn resolve(
    url: &StoreUrl,
    args: &StoreArgs,
    sys: Arc<dyn System>,
) -> Result<StoreConfig, ConfigError> {
    let location = endpoint::locate(&Given {
        scheme: url.scheme,
        bucket: &url.bucket,
        endpoint: args.endpoint.as_deref(),
        region: args.region.as_deref(),
        path_style: args.path_style,
        signed: !args.no_sign_request,
    })?;
    let auth = if args.no_sign_request {
        Auth::Anonymous
    } else {
        Auth::signed(
            url.scheme,
            credentials::resolve(url.scheme, &args.chain_options(&|k| sys.var(k)), sys)?,
        )
    };
    Ok(StoreConfig {
        scheme: url.scheme,
        bucket: url.bucket.clone(),
        endpoint: location.endpoint,
        region: location.region,
        path_style: location.path_style,
        auth,
        version_id: None,
    })
}

/// The store with default settings (no CA files beyond the bundled and system roots).
pub fn connect(cfg: &StoreConfig) -> Result<Arc<dyn ObjectStore>, ConfigError> {
    connect_with(cfg, HttpConfig::default(), RetryConfig::default())
}

/// The store every command uses: the HTTP client (default timeouts, the CA files of `args`
/// and the environment) wrapped in retries.
pub fn connect_args(
    cfg: &StoreConfig,
    args: &StoreArgs,
) -> Result<Arc<dyn ObjectStore>, ConfigError> {
    let http = args.http_config(&|k| std::env::var(k).ok());
    connect_with(cfg, http, RetryConfig::default())
}

/// [`connect`] with explicit timeouts and retry policy (tests use short ones).
pub fn connect_with(
    cfg: &StoreConfig,
    http: HttpConfig,
    retry: RetryConfig,
) -> Result<Arc<dyn ObjectStore>, ConfigError> {
    let store = HttpStore::new(cfg.clone(), http)?;
    Ok(Arc::new(
        RetryingStore::new(Arc::new(store), retry).with_credentials(cfg.auth.holder().cloned()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::credentials::system::FakeSystem;

    fn args(endpoint: Option<&str>, region: Option<&str>) -> StoreArgs {
        StoreArgs {
            endpoint: endpoint.map(String::from),
            region: region.map(String::from),
            no_sign_request: false,
            path_style: false,
            profile: None,
            ram_role: None,
            credential_process: None,
            credential_process_timeout: process::DEFAULT_TIMEOUT,
            metadata_endpoint: None,
            sts_endpoint: None,
            ca_bundle: None,
        }
    }

    /// The environment `pairs`, with the metadata service off so no test asks the network.
    fn env_of(pairs: &[(&str, &str)]) -> Arc<dyn System> {
        let mut all = pairs.to_vec();
        all.push(("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"));
        Arc::new(FakeSystem::with_vars(&all))
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
        super::resolve(&u, &a, env_of(env)).map_err(|e| e.to_string())
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
            Auth::OssV4(h) => {
                let cr = h.current().credentials.clone();
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
        let e = resolve(
            "oss://bkt",
            args(
                Some("cn-hangzhou-j-internal.oss-data-acc.aliyuncs.com"),
                None,
            ),
            OSS_ENV,
        )
        .unwrap_err();
        assert!(
            e.contains("--region is required") && e.contains("accelerator"),
            "{e}"
        );
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
            Auth::S3V4(h) => {
                let cr = h.current().credentials.clone();
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
        assert!(
            e.contains("OSS_ACCESS_KEY_ID is set but OSS_ACCESS_KEY_SECRET is not"),
            "{e}"
        );
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
            Auth::OssV4(h) => {
                assert_eq!(h.current().credentials.session_token.as_deref(), Some("t"))
            }
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
