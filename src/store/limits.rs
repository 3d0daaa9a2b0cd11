//! Bounds on what a server can make ossmount do: how much of a body is read whole, how
//! many pages one listing may take, and how slow a body may get before it counts as stalled.
//!
//! Every body read into memory whole has a cap ([`read_capped`]): listing XML
//! ([`LISTING_BODY_CAP`]), error XML (`HttpConfig::error_body_limit`, 64 KiB), and the
//! credential JSON of metadata services ([`JSON_BODY_CAP`]). A body over its cap is a
//! protocol error, so a broken or hostile server costs at most the cap in memory.
//!
//! A listing walk goes through a [`ListGuard`]: a continuation token that repeats (the
//! server is not moving, or is going round in circles), a page bigger than asked for, or a
//! directory past [`MAX_LISTING_ENTRIES`] ends the walk with an error instead of looping
//! or growing without end.

use std::collections::HashSet;

use futures_util::StreamExt;

use super::{ListPage, StoreError};

/// Cap of one ListObjectsV2 body: 16 MiB. The largest legitimate page is 1000 keys of the
/// maximum 1023 bytes, URL-encoded at up to 3 bytes per byte, plus ~400 bytes of XML per
/// entry: about 3.5 MiB. 16 MiB leaves 4x room and bounds a bad server's page.
pub const LISTING_BODY_CAP: usize = 16 << 20;

/// Cap of a credential document (ECS RAM role, STS, credential URI): 64 KiB. They are a
/// few hundred bytes; an STS token is about 2 KiB.
pub const JSON_BODY_CAP: usize = 64 << 10;

/// Entries (files plus subdirectories) one directory listing may hold: 1,000,000. The
/// mount keeps a listing in memory (about 300 bytes per entry: key, ETag, times), so this
/// bounds one directory at ~300 MiB; 1000 pages at 1000 keys each. A server whose pages
/// never end (or a bucket so flat) gets an error naming this limit, not an OOM.
pub const MAX_LISTING_ENTRIES: usize = 1_000_000;

/// Read a whole body, failing once it passes `cap` bytes (never holding more than `cap`
/// plus one chunk).
pub async fn read_capped(
    resp: reqwest::Response,
    cap: usize,
    what: &str,
) -> Result<Vec<u8>, StoreError> {
    if let Some(len) = resp.content_length() {
        if len > cap as u64 {
            return Err(over_cap(what, len, cap));
        }
    }
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            let msg = format!("{what}: body broke after {} bytes: {e}", buf.len());
            if e.is_timeout() {
                StoreError::Timeout(msg)
            } else {
                StoreError::Network(msg)
            }
        })?;
        if buf.len() + chunk.len() > cap {
            return Err(over_cap(what, (buf.len() + chunk.len()) as u64, cap));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn over_cap(what: &str, len: u64, cap: usize) -> StoreError {
    StoreError::Protocol(format!(
        "{what}: body of {len}+ bytes is over the {cap}-byte limit for it"
    ))
}

/// The checks of one listing walk across its pages.
#[derive(Debug)]
pub struct ListGuard {
    what: String,
    max_entries: usize,
    entries: usize,
    pages: u64,
    tokens: HashSet<String>,
}

impl ListGuard {
    /// A walk of `what` (for messages), at most [`MAX_LISTING_ENTRIES`] entries.
    pub fn new(what: impl Into<String>) -> Self {
        Self::with_max_entries(what, MAX_LISTING_ENTRIES)
    }

    pub fn with_max_entries(what: impl Into<String>, max_entries: usize) -> Self {
        Self {
            what: what.into(),
            max_entries,
            entries: 0,
            pages: 0,
            tokens: HashSet::new(),
        }
    }

    /// Account for `page`; `Ok(Some(token))` to ask for the next one, `Ok(None)` at the
    /// end, `Err` when the server misbehaves.
    pub fn next(&mut self, page: &ListPage) -> Result<Option<String>, StoreError> {
        self.pages += 1;
        self.entries += page.objects.len() + page.common_prefixes.len();
        if self.entries > self.max_entries {
            return Err(StoreError::Protocol(format!(
                "{}: more than {} entries after {} pages; refusing to hold more of one \
                 listing in memory",
                self.what, self.max_entries, self.pages
            )));
        }
        let Some(token) = page
            .next_continuation_token
            .as_ref()
            .filter(|t| !t.is_empty())
        else {
            return Ok(None);
        };
        if !self.tokens.insert(token.clone()) {
            return Err(StoreError::Protocol(format!(
                "{}: the server sent continuation token {:?} twice (page {}); the listing \
                 would never end",
                self.what,
                truncate(token),
                self.pages
            )));
        }
        Ok(Some(token.clone()))
    }
}

/// A token as shown in a message: a hostile one may be megabytes.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: usize, token: Option<&str>) -> ListPage {
        ListPage {
            common_prefixes: (0..n).map(|i| format!("p{i}/")).collect(),
            next_continuation_token: token.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn a_token_that_does_not_move_or_comes_round_again_ends_the_walk() {
        let mut g = ListGuard::new("list \"\"");
        assert_eq!(g.next(&page(3, Some("a"))).unwrap().as_deref(), Some("a"));
        assert!(g.next(&page(3, Some("a"))).is_err());
        let mut g = ListGuard::new("x");
        g.next(&page(1, Some("a"))).unwrap();
        g.next(&page(1, Some("b"))).unwrap();
        let e = g.next(&page(1, Some("a"))).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        assert_eq!(ListGuard::new("x").next(&page(1, None)).unwrap(), None);
        assert_eq!(ListGuard::new("x").next(&page(1, Some(""))).unwrap(), None);
    }

    #[test]
    fn pages_that_never_end_stop_at_the_entry_limit() {
        let mut g = ListGuard::with_max_entries("x", 10_000);
        let mut n = 0;
        let e = loop {
            n += 1;
            match g.next(&page(1000, Some(&format!("t{n}")))) {
                Ok(Some(_)) => assert!(n < 100, "never stopped"),
                Ok(None) => panic!("ended"),
                Err(e) => break e,
            }
        };
        assert_eq!(n, 11);
        assert!(e.to_string().contains("more than 10000 entries"), "{e}");
    }
}
