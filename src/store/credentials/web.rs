//! The small HTTP client every credential service is asked with: the ECS metadata service,
//! Alibaba Cloud STS, a credentials URI, and for `s3://` AWS STS, IMDS and the container
//! endpoint, so that all of them get the same trust, proxy rules, timeouts and body cap.
//!
//! One client per source, used only on the holder's refresh thread. Timeouts are short and
//! total: these are tiny requests to a nearby service, and the first fetch is waited for
//! by the command, so a service that does not answer must fail in seconds, not hang a
//! mount (credentials-go uses 1 s connect / 1 s read for the metadata service and 5 s /
//! 10 s for STS; ours are a little longer for loaded machines).
//!
//! The clients trust what the object client trusts ([`Net`]: the bundled and system roots,
//! `SSL_CERT_FILE`, `AWS_CA_BUNDLE`, `--ca-bundle`), so a private cloud's STS behind a
//! private CA works as its OSS endpoint does. Proxies: `HTTPS_PROXY` / `HTTP_PROXY` /
//! `NO_PROXY` apply to STS and to a credentials URI on another host, as they do for the
//! object client; never to the metadata service (it is the instance's own link-local
//! service, and a proxy elsewhere would answer with *its* host's role, or not at all), nor
//! to a loopback or link-local URI (Go's net/http, which credentials-go uses, never proxies
//! loopback either).
//!
//! Every body is read whole under [`JSON_BODY_CAP`], so a broken or hostile service costs at
//! most 64 KiB of memory, not whatever it sends within the timeout.

use std::net::IpAddr;
use std::time::Duration;

use super::CredentialsError;
use crate::store::config::ConfigError;
use crate::store::limits::{read_capped, JSON_BODY_CAP};
use crate::store::tls::Trust;

/// What every credential client shares with the object client: the extra CA certificates.
/// Default: none (the bundled and system roots only, as `HttpConfig::default()`).
#[derive(Clone, Debug, Default)]
pub struct Net {
    roots: Vec<reqwest::Certificate>,
}

impl Net {
    /// The certificates of `trust` (read once, so every source's client shares them); an
    /// unusable CA file is the same error the object client gives.
    pub fn new(trust: &Trust) -> Result<Self, ConfigError> {
        Ok(Net {
            roots: trust.certificates()?,
        })
    }

    /// A client with a `connect` timeout and a `total` timeout per request. `direct`: never
    /// through a proxy (see the module doc).
    pub fn client(&self, connect: Duration, total: Duration, direct: bool) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(total)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ossmount/", env!("CARGO_PKG_VERSION")));
        for cert in &self.roots {
            b = b.add_root_certificate(cert.clone());
        }
        if direct {
            b = b.no_proxy();
        }
        match b.build() {
            Ok(c) => c,
            Err(e) => {
                // Not seen in practice (rustls on ring initialises; bad proxy variables
                // are skipped by reqwest); say so rather than drop the CA files silently.
                tracing::warn!("credential client: {e}; using a default client");
                reqwest::Client::new()
            }
        }
    }

    /// The client for a metadata service (ECS's `100.100.100.200`, IMDS, the container
    /// endpoint): 2 s to connect, 5 s per request, so a machine without one learns it in
    /// seconds; never through a proxy, whatever the variables say (a proxy would answer
    /// with its own host's role, or not at all). The CA files still apply: a private cloud
    /// may serve its metadata over https.
    pub fn metadata_client(&self) -> reqwest::Client {
        self.client(Duration::from_secs(2), Duration::from_secs(5), true)
    }

    /// The client for STS (Alibaba Cloud's and AWS's): 5 s to connect, 15 s per request
    /// (credentials-go: 5 s connect, 10 s read), through `HTTPS_PROXY` unless `NO_PROXY`
    /// says otherwise, as the object client's requests go.
    pub fn sts_client(&self) -> reqwest::Client {
        self.client(Duration::from_secs(5), Duration::from_secs(15), false)
    }
}

/// Whether `url`'s host is loopback or link-local (`127.0.0.0/8`, `::1`, `localhost`,
/// `169.254.0.0/16`, `fe80::/10`): a service on this machine or its link, never proxied.
pub fn is_local(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = u.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_link_local(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback()
                || (ip.segments()[0] & 0xffc0) == 0xfe80
                || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// A response's whole body as text, at most [`JSON_BODY_CAP`] bytes: more is an error
/// naming the limit (a credential document is a few hundred bytes, an STS token ~2 KiB).
pub async fn body(resp: reqwest::Response, what: &str) -> Result<String, CredentialsError> {
    let bytes = read_capped(resp, JSON_BODY_CAP, what)
        .await
        .map_err(|e| CredentialsError::Failed(e.to_string()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `host[:port]` or a URL as a URL without a trailing slash, `default_scheme` when none.
pub fn base_url(s: &str, default_scheme: &str) -> String {
    let s = s.trim().trim_end_matches('/');
    if s.contains("://") {
        s.to_string()
    } else {
        format!("{default_scheme}://{s}")
    }
}

/// A transport error as a message: the cause chain, never a URL's query (which for STS
/// carries the signature and, with a source token, the token). A refused certificate says
/// how to trust its CA.
pub fn transport(what: &str, e: reqwest::Error) -> CredentialsError {
    let e = e.without_url();
    let mut msg = format!("{what}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    if msg.contains("timed out") || msg.contains("operation timed out") {
        msg.push_str(" (no answer in time)");
    }
    if msg.contains("invalid peer certificate") || msg.contains("peer sent no certificates") {
        msg.push_str(" (the TLS certificate is not trusted: give its CA with --ca-bundle)");
    }
    CredentialsError::Failed(msg)
}

/// At most `n` characters of a service's error body, on one line.
pub fn snippet(body: &str, n: usize) -> String {
    body.trim()
        .chars()
        .take(n)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A credential service's answer: its status and its body as text, read under
/// [`JSON_BODY_CAP`], so a broken or hostile service costs at most 64 KiB.
pub async fn capped_text(
    resp: reqwest::Response,
    what: &str,
) -> Result<(u16, String), CredentialsError> {
    let status = resp.status().as_u16();
    Ok((status, body(resp, what).await?))
}

/// Send `req` (built on a client of [`Net`]) and read its body: the text on 2xx, else
/// `WHAT: HTTP STATUS` plus `hint(status)` (what that status means for this service, e.g.
/// "no such role"). The body of a refusal is not quoted: a metadata service's may echo a
/// token. Transport errors as [`transport`] words them.
pub async fn get_ok(
    req: reqwest::RequestBuilder,
    what: &str,
    hint: impl Fn(u16) -> &'static str,
) -> Result<String, CredentialsError> {
    let resp = req.send().await.map_err(|e| transport(what, e))?;
    let (status, text) = capped_text(resp, what).await?;
    if !(200..300).contains(&status) {
        return Err(CredentialsError::Failed(format!(
            "{what}: HTTP {status}{}",
            hint(status)
        )));
    }
    Ok(text)
}

/// `POST url` with a form body (`application/x-www-form-urlencoded`, no compression, as
/// the SDKs call STS) and `headers` (a signature); the status and the capped body, for the
/// caller's STS parser, which reads the error document on a refusal.
pub async fn post_form(
    client: &reqwest::Client,
    url: &str,
    headers: Vec<(String, String)>,
    form: String,
    what: &str,
) -> Result<(u16, String), CredentialsError> {
    let mut req = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept-encoding", "identity");
    for (n, v) in headers {
        req = req.header(n, v);
    }
    let resp = req
        .body(form)
        .send()
        .await
        .map_err(|e| transport(what, e))?;
    capped_text(resp, what).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts_are_never_proxied() {
        for u in [
            "http://127.0.0.1:8080/creds",
            "http://localhost/x",
            "http://169.254.170.2/v2/credentials",
            "http://[::1]:9/",
            "http://[fe80::1]/",
        ] {
            assert!(is_local(u), "{u}");
        }
        for u in [
            "https://sts.aliyuncs.com",
            "http://10.0.0.1/c",
            "http://100.100.100.201/c",
            "not a url",
        ] {
            assert!(!is_local(u), "{u}");
        }
    }
}
