//! The small HTTP client the metadata service and STS are asked with.
//!
//! One client per source, used only on the holder's refresh thread. Timeouts are short and
//! total: these are tiny requests to a nearby service, and the first fetch is waited for
//! by the command, so a service that does not answer must fail in seconds, not hang a
//! mount (credentials-go uses 1 s connect / 1 s read for the metadata service and 5 s /
//! 10 s for STS; ours are a little longer for loaded machines).

use std::time::Duration;

use super::CredentialsError;

/// A client with a `connect` timeout and a `total` timeout per request. `direct`: never
/// through a proxy (the metadata service is link-local).
pub fn client(connect: Duration, total: Duration, direct: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(total)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ossmount/", env!("CARGO_PKG_VERSION")));
    if direct {
        b = b.no_proxy();
    }
    b.build().unwrap_or_else(|_| reqwest::Client::new())
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
/// carries the signature and, with a source token, the token).
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

/// A credential service's answer: its status and its body as text, read through
/// [`crate::store::limits::read_capped`] with [`crate::store::limits::JSON_BODY_CAP`], so a
/// broken or hostile service costs at most 64 KiB.
pub async fn capped_text(
    resp: reqwest::Response,
    what: &str,
) -> Result<(u16, String), CredentialsError> {
    use crate::store::limits::{read_capped, JSON_BODY_CAP};
    let status = resp.status().as_u16();
    let bytes = read_capped(resp, JSON_BODY_CAP, what)
        .await
        .map_err(|e| CredentialsError::Failed(e.to_string()))?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
