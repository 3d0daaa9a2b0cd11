//! A credential process: a command that prints credentials as JSON on stdout, run at
//! start and again before they expire (`--credential-process "CMD ARGS"`, or a CLI
//! profile in `External` mode).
//!
//! Three shapes are accepted: the OSS SDKs' and ossfs 2.0's
//! `{"AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}`, the aliyun CLI's
//! External one `{"mode": "AK"|"StsToken", "access_key_id", "access_key_secret",
//! "sts_token", "expiration"}` (credentials-go `providers/external.go`), and the AWS
//! `credential_process` one `{"Version": 1, "AccessKeyId", "SecretAccessKey",
//! "SessionToken", "Expiration"}`. Without an expiration the keys are long-lived.
//!
//! The command runs under `sh -c` (quoting as in a shell) in its own process group, with
//! stdin closed; after the timeout (60 s, credentials-go's) the whole group is killed, so a
//! hung helper and its children cannot hang a mount. Errors name the program (the first
//! word, never the arguments, which may hold secrets), the exit status and the last line
//! of stderr; stdout is never quoted.

use std::process::Stdio;
use std::time::Duration;

use super::{json_object, parse_time, CredentialsError, Issued, Provider};
use crate::store::Credentials;

/// How long a process may take: 60 s, credentials-go's default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

pub struct CredentialProcess {
    pub command: String,
    pub timeout: Duration,
}

impl CredentialProcess {
    fn program(&self) -> String {
        self.command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    }
}

/// The JSON a process printed, in either shape.
pub fn parse_output(stdout: &str, what: &str) -> Result<Issued, CredentialsError> {
    let v = json_object(stdout.trim(), what)?;
    let (id_f, secret_f, token_f, exp_f) = if v.get("SecretAccessKey").is_some() {
        (
            "AccessKeyId",
            "SecretAccessKey",
            "SessionToken",
            "Expiration",
        )
    } else if v.get("AccessKeyId").is_some() {
        (
            "AccessKeyId",
            "AccessKeySecret",
            "SecurityToken",
            "Expiration",
        )
    } else {
        (
            "access_key_id",
            "access_key_secret",
            "sts_token",
            "expiration",
        )
    };
    let opt = |f: &str| -> Result<Option<String>, CredentialsError> {
        match v.get(f) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(_) => Err(CredentialsError::Failed(format!(
                "{what}: field {f} is not a string"
            ))),
        }
    };
    let id = opt(id_f)?
        .ok_or_else(|| CredentialsError::Failed(format!("{what}: field {id_f} is missing")))?;
    let secret = opt(secret_f)?
        .ok_or_else(|| CredentialsError::Failed(format!("{what}: field {secret_f} is missing")))?;
    let token = opt(token_f)?;
    if v.get("mode").and_then(|m| m.as_str()) == Some("StsToken") && token.is_none() {
        return Err(CredentialsError::Failed(format!(
            "{what}: mode StsToken without sts_token"
        )));
    }
    let expires = match opt(exp_f)? {
        None => None,
        Some(e) => Some(parse_time(&e).ok_or_else(|| {
            CredentialsError::Failed(format!(
                "{what}: {exp_f} {e:?} is not a time like 2006-01-02T15:04:05Z"
            ))
        })?),
    };
    Ok(Issued {
        credentials: Credentials {
            access_key_id: id,
            access_key_secret: secret,
            session_token: token,
        },
        expires,
    })
}

#[async_trait::async_trait]
impl Provider for CredentialProcess {
    async fn fetch(&self) -> Result<Issued, CredentialsError> {
        let what = format!("credential process {:?}", self.program());
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CredentialsError::Failed(format!("{what}: cannot start: {e}")))?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let collect = async move {
            use tokio::io::AsyncReadExt;
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (mut so, mut se) = (stdout.expect("piped"), stderr.expect("piped"));
            let (r1, r2, status) = tokio::join!(
                so.read_to_end(&mut out),
                se.read_to_end(&mut err),
                child.wait()
            );
            (r1.and(r2).and(status), out, err)
        };
        let (status, out, err) = match tokio::time::timeout(self.timeout, collect).await {
            Ok(r) => r,
            Err(_) => {
                if let Some(pid) = pid {
                    // SAFETY: kill(2) on our own child's process group.
                    unsafe {
                        libc::kill(-(pid as i32), libc::SIGKILL);
                    }
                }
                return Err(CredentialsError::Failed(format!(
                    "{what}: no answer within {} s (killed)",
                    self.timeout.as_secs_f64()
                )));
            }
        };
        let status = status.map_err(|e| CredentialsError::Failed(format!("{what}: {e}")))?;
        if !status.success() {
            let stderr = String::from_utf8_lossy(&err);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| format!(": {}", super::web::snippet(l, 200)))
                .unwrap_or_default();
            return Err(CredentialsError::Failed(format!(
                "{what} failed ({status}){last}"
            )));
        }
        parse_output(&String::from_utf8_lossy(&out), &what)
    }

    fn describe(&self) -> String {
        format!("credential process {:?}", self.program())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cmd: &str, timeout: Duration) -> Result<Issued, CredentialsError> {
        let p = CredentialProcess {
            command: cmd.into(),
            timeout,
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(p.fetch())
    }

    #[test]
    fn shapes() {
        let i = parse_output(
            r#"{"AccessKeyId":"a","AccessKeySecret":"s","SecurityToken":"t","Expiration":"2026-12-02T10:00:00Z"}"#,
            "p",
        )
        .unwrap();
        assert!(i.expires.is_some() && i.credentials.session_token.is_some());
        let i = parse_output(
            r#"{"mode":"AK","access_key_id":"a","access_key_secret":"s"}"#,
            "p",
        )
        .unwrap();
        assert_eq!(i.expires, None);
        let i = parse_output(
            r#"{"Version":1,"AccessKeyId":"AKIA","SecretAccessKey":"s","SessionToken":"t","Expiration":"2026-12-02T10:00:00Z"}"#,
            "p",
        )
        .unwrap();
        assert_eq!(i.credentials.session_token.as_deref(), Some("t"));
        let e = parse_output(
            r#"{"mode":"StsToken","access_key_id":"a","access_key_secret":"s"}"#,
            "p",
        )
        .unwrap_err();
        assert!(e.to_string().contains("sts_token"), "{e}");
    }

    #[test]
    fn processes() {
        let i = run(
            r#"echo '{"AccessKeyId":"a","AccessKeySecret":"s"}'"#,
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(i.credentials.access_key_id, "a");
        let e = run(
            "echo SECRET-OUT; echo 'no such role' >&2; exit 3",
            Duration::from_secs(20),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("exit status: 3") && e.contains("no such role"),
            "{e}"
        );
        assert!(!e.contains("SECRET-OUT"), "{e}");
        let e = run(
            "echo '{\"AccessKeyId\": SECRET-OUT'",
            Duration::from_secs(20),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not valid JSON") && !e.contains("SECRET"), "{e}");
        // A hung process and its child are killed at the timeout.
        let started = std::time::Instant::now();
        let e = run("sleep 30 & sleep 30", Duration::from_millis(500))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no answer within"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
