//! What a store needs to talk to one bucket: protocol family, endpoint, region, addressing
//! style and how requests are signed.
//!
//! These are the store's own settings, already resolved: [`super::endpoint`] holds the rules
//! that turn what the user typed into an endpoint, a region and an addressing style, and
//! [`super::credentials`] where the keys come from. Turning a command line into these
//! happens above the store; nothing here knows about options or URLs.

use std::sync::Arc;

use super::credentials::CredentialHolder;
use super::Credentials;

/// Which protocol family a bucket speaks.
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

/// How requests are authenticated. The signers read the holder's current credentials at
/// each request, so refreshed ones are used as soon as they are installed.
#[derive(Clone, Debug)]
pub enum Auth {
    OssV4(Arc<CredentialHolder>),
    S3V4(Arc<CredentialHolder>),
    Anonymous,
}

impl Auth {
    /// Requests signed with `holder`'s credentials the way `scheme`'s services expect.
    pub fn signed(scheme: Scheme, holder: Arc<CredentialHolder>) -> Self {
        match scheme {
            Scheme::Oss => Auth::OssV4(holder),
            Scheme::S3 => Auth::S3V4(holder),
        }
    }

    /// Requests signed with fixed `credentials` (tests, programs embedding the store).
    pub fn with_keys(scheme: Scheme, credentials: Credentials) -> Self {
        Self::signed(scheme, CredentialHolder::fixed("given keys", credentials))
    }

    /// The credentials holder, unless anonymous.
    pub fn holder(&self) -> Option<&Arc<CredentialHolder>> {
        match self {
            Auth::OssV4(h) | Auth::S3V4(h) => Some(h),
            Auth::Anonymous => None,
        }
    }
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
    /// Every object request (HeadObject, GetObject, GetSymlink) names this version with
    /// `versionId=ID`, signed like any other query parameter: the store reads one version
    /// of its objects in a versioning-enabled bucket (`download --version-id`). `None`:
    /// the latest version, as without versioning.
    pub version_id: Option<String>,
}

impl StoreConfig {
    /// A stable identity of (endpoint, bucket) for cache entry names.
    pub fn namespace(&self) -> String {
        format!("{}/{}", self.endpoint, self.bucket)
    }
}

/// A setting the store cannot work with; the message says which and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}
