//! Where the keys a store signs with come from.
//!
//! Today there is one source, the environment, read once when a command starts: `OSS_*`
//! for `oss://`, `AWS_*` for `s3://`, never options, so secrets stay out of `ps` and shell
//! history. The variables of one family never sign the other's requests. Other sources
//! (credentials files, a metadata service, STS) would be further functions beside
//! [`credentials_from_env`], tried in order by one chain.
//!
//! The environment is injected as a lookup function, so tests never touch the process
//! environment.

use super::config::{invalid, ConfigError, Scheme};
use super::Credentials;

/// Reads one environment variable: `|name| std::env::var(name).ok()` outside tests.
pub type Env<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// The variables holding `scheme`'s key id, secret and session token.
fn variables(scheme: Scheme) -> (&'static str, &'static str, &'static str) {
    match scheme {
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
    }
}

fn non_empty(env: &Env<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

/// Credentials from the environment for `scheme`, or a message naming what is missing.
pub fn credentials_from_env(scheme: Scheme, env: &Env<'_>) -> Result<Credentials, ConfigError> {
    let (id_var, secret_var, token_var) = variables(scheme);
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
