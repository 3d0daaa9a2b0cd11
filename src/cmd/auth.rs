//! `ossmount auth check URL`: which credentials the chain picks for URL, and one signed
//! request proving they work. Prints the source, the key id's last four characters and
//! the expiry; never a secret.

use std::sync::Arc;
use std::time::SystemTime;

use crate::cli::{exit, AuthCommand, Failure};
use crate::config::{self, StoreUrl};
use crate::store::config::Auth;
use crate::store::credentials::{format_time, key_id_tail, RealSystem};
use crate::store::ListRequest;

pub fn run(cmd: AuthCommand) -> Result<(), Failure> {
    let AuthCommand::Check { url, store } = cmd;
    let usage = |e: String| Failure::new(exit::USAGE, e);
    let parsed = StoreUrl::parse(&url).map_err(|e| usage(e.to_string()))?;
    let cfg =
        config::resolve(&parsed, &store, Arc::new(RealSystem)).map_err(|e| usage(e.to_string()))?;
    match cfg.auth.holder() {
        None => println!("source:  none (--no-sign-request: anonymous requests)"),
        Some(h) => {
            let issued = h.current();
            println!("source:  {}", h.source());
            println!(
                "key id:  {}",
                key_id_tail(&issued.credentials.access_key_id)
            );
            match issued.expires {
                None => println!("expires: never (long-lived keys)"),
                Some(t) => {
                    let left = t
                        .duration_since(SystemTime::now())
                        .map(|d| format!("in {} s", d.as_secs()))
                        .unwrap_or_else(|_| "already expired".into());
                    println!(
                        "expires: {} ({left}; refreshed before then)",
                        format_time(t)
                    );
                }
            }
            if issued.credentials.session_token.is_some() {
                println!("token:   yes (temporary credentials)");
            }
        }
    }
    let signing = match &cfg.auth {
        Auth::OssV4(_) => "OSS V4",
        Auth::S3V4(_) => "S3 SigV4",
        Auth::Anonymous => "unsigned",
    };
    let store_ = config::connect_args(&cfg, &store).map_err(|e| usage(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::GENERIC, format!("cannot start the runtime: {e}")))?;
    let req = ListRequest {
        prefix: parsed.path.clone(),
        delimiter: Some("/".into()),
        continuation_token: None,
        max_keys: 1,
    };
    match rt.block_on(store_.list(&req)) {
        Ok(page) => {
            println!(
                "request: ListObjectsV2 {url} (max-keys 1, {signing}, {}): OK, {} entr{}",
                store_.describe(),
                page.objects.len() + page.common_prefixes.len(),
                if page.objects.len() + page.common_prefixes.len() == 1 {
                    "y"
                } else {
                    "ies"
                }
            );
            Ok(())
        }
        Err(e) => Err(Failure::new(
            exit::STORE,
            format!("auth check: ListObjectsV2 {url} ({signing}) failed: {e}"),
        )),
    }
}
