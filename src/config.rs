//! From what the user typed (`oss://bucket/prefix`, `--endpoint`, `--region`, environment
//! credentials) to a connected [`ObjectStore`]. STUB: the API is fixed; bodies pending.

use std::sync::Arc;

use crate::cli::StoreArgs;
use crate::store::{Credentials, ObjectStore};

/// Which protocol family a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `oss://`: OSS V4 signatures, OSS endpoints, `OSS_*` credentials.
    Oss,
    /// `s3://`: S3 SigV4, `AWS_*` credentials.
    S3,
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

impl StoreUrl {
    pub fn parse(_s: &str) -> Result<Self, ConfigError> {
        todo!("URL parsing")
    }
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

impl StoreConfig {
    /// Resolve endpoint, region, addressing style and credentials. `env` reads environment
    /// variables (injected so tests do not touch the process environment).
    pub fn resolve(
        _url: &StoreUrl,
        _args: &StoreArgs,
        _env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        todo!("config resolution")
    }

    /// A stable identity of (endpoint, bucket) for cache entry names.
    pub fn namespace(&self) -> String {
        format!("{}/{}", self.endpoint, self.bucket)
    }
}

/// The store every command uses: the HTTP client wrapped in retries.
pub fn connect(_cfg: &StoreConfig) -> Result<Arc<dyn ObjectStore>, ConfigError> {
    todo!("connect")
}
