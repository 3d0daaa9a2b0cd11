//! Which certificate authorities the HTTP client trusts, and the proxies it goes through.
//!
//! Trust is additive, so adding a private CA never breaks a public endpoint:
//!
//! 1. the bundled Mozilla roots (webpki-roots), so a minimal container with no CA store
//!    still reaches OSS and S3;
//! 2. the system's CA store (rustls-native-certs: `/etc/ssl/certs` and friends, or, as with
//!    OpenSSL, only `SSL_CERT_FILE` / `SSL_CERT_DIR` when either is set), where companies
//!    install their own roots;
//! 3. `AWS_CA_BUNDLE` (the AWS CLI's and SDKs' variable; honoured for `oss://` too, since
//!    it is one client), then `--ca-bundle FILE`.
//!
//! Every *file* named explicitly (`--ca-bundle`, `AWS_CA_BUNDLE`, `SSL_CERT_FILE`) must be
//! readable and hold at least one PEM certificate, else the command stops at start with an
//! error that names the file and where it came from: a typo in a CA path otherwise shows up
//! much later as "certificate not trusted", or not at all. An empty variable counts as
//! unset. A bundle that exists but does not hold the server's CA does no harm (the others
//! still apply); a server nobody vouches for is refused with rustls's reason (unknown issuer,
//! or a certificate for another name).
//!
//! Proxies: reqwest reads `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` (and the lower-case
//! names) and `NO_PROXY` itself (hyper-util's matcher: host names, domain suffixes, IPs and
//! CIDRs); `https://` endpoints are tunnelled with CONNECT, so TLS is end to end and the
//! proxy never sees a signature it could replay elsewhere.

use std::path::{Path, PathBuf};

use super::config::ConfigError;

/// One CA file to trust and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaBundle {
    pub path: PathBuf,
    /// `--ca-bundle`, `AWS_CA_BUNDLE` or `SSL_CERT_FILE`: named in errors.
    pub source: &'static str,
}

/// The CA files added to the built-in roots. Default: none (bundled + system roots only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    /// Added to the client's roots, in order.
    pub bundles: Vec<CaBundle>,
    /// `SSL_CERT_FILE`, checked like the others but read by the system-store loader.
    pub ssl_cert_file: Option<PathBuf>,
}

impl Trust {
    /// From `--ca-bundle` and the environment (`env` reads a variable; injected for tests).
    pub fn resolve(flag: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| {
            env(name)
                .filter(|v| !v.trim().is_empty())
                .map(PathBuf::from)
        };
        let mut bundles = Vec::new();
        if let Some(path) = var("AWS_CA_BUNDLE") {
            bundles.push(CaBundle {
                path,
                source: "AWS_CA_BUNDLE",
            });
        }
        if let Some(p) = flag {
            bundles.push(CaBundle {
                // Absolute: a mount goes on in the background, elsewhere.
                path: std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()),
                source: "--ca-bundle",
            });
        }
        Trust {
            bundles,
            ssl_cert_file: var("SSL_CERT_FILE"),
        }
    }

    /// The certificates of every bundle, or an error naming the first unusable file.
    pub fn certificates(&self) -> Result<Vec<reqwest::Certificate>, ConfigError> {
        if let Some(p) = &self.ssl_cert_file {
            read_bundle(p, "SSL_CERT_FILE")?;
        }
        let mut all = Vec::new();
        for b in &self.bundles {
            all.extend(read_bundle(&b.path, b.source)?);
        }
        Ok(all)
    }
}

fn read_bundle(path: &Path, source: &str) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    let fail = |why: String| {
        ConfigError::Invalid(format!(
            "CA bundle {} (from {source}): {why}; point {source} at a PEM file of CA \
             certificates{}",
            path.display(),
            if source.starts_with("--") {
                ""
            } else {
                " or unset it"
            }
        ))
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| fail(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate in it".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn sources_in_order_and_empty_variables_ignored() {
        let t = Trust::resolve(
            Some(Path::new("/x/flag.pem")),
            &env_of(&[("AWS_CA_BUNDLE", "/x/aws.pem"), ("SSL_CERT_FILE", " ")]),
        );
        assert_eq!(
            t.bundles,
            [
                CaBundle {
                    path: "/x/aws.pem".into(),
                    source: "AWS_CA_BUNDLE"
                },
                CaBundle {
                    path: "/x/flag.pem".into(),
                    source: "--ca-bundle"
                }
            ]
        );
        assert_eq!(t.ssl_cert_file, None);
        assert_eq!(Trust::resolve(None, &env_of(&[])), Trust::default());
    }

    #[test]
    fn a_missing_or_empty_bundle_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let t = Trust::resolve(None, &env_of(&[("AWS_CA_BUNDLE", "/nonexistent/ca.pem")]));
        let e = t.certificates().unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/ca.pem") && e.contains("AWS_CA_BUNDLE"),
            "{e}"
        );
        assert!(e.contains("unset it"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = Trust::resolve(Some(&empty), &env_of(&[]))
            .certificates()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--ca-bundle") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = Trust::resolve(None, &env_of(&[("SSL_CERT_FILE", "/nonexistent/x")]))
            .certificates()
            .unwrap_err()
            .to_string();
        assert!(e.contains("SSL_CERT_FILE"), "{e}");
    }
}
