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

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{json_object, parse_time, CredentialsError, Issued, Provider};
use crate::store::limits::JSON_BODY_CAP;
use crate::store::Credentials;

/// How much of a process's stderr is kept for its error message: the last 4 KiB (the
/// message quotes its last line).
const STDERR_TAIL: usize = 4 << 10;

enum Collect {
    /// stdout passed [`JSON_BODY_CAP`].
    TooMuch,
    Io(std::io::Error),
}

/// Everything `r` gives until it ends, or [`Collect::TooMuch`] once past `cap` bytes.
async fn read_up_to(mut r: impl AsyncRead + Unpin, cap: usize) -> Result<Vec<u8>, Collect> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = r.read(&mut chunk).await.map_err(Collect::Io)?;
        if n == 0 {
            return Ok(buf);
        }
        if buf.len() + n > cap {
            return Err(Collect::TooMuch);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The last `keep` bytes `r` gives before it ends (or fails).
async fn read_tail(mut r: impl AsyncRead + Unpin, keep: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = r.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 2 * keep {
            buf.drain(..buf.len() - keep);
        }
    }
    if buf.len() > keep {
        buf.drain(..buf.len() - keep);
    }
    buf
}

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
            let (so, se) = (stdout.expect("piped"), stderr.expect("piped"));
            // stdout up to the cap (more ends the wait: the group is killed below), stderr
            // only its tail: a process that prints endlessly costs at most the caps.
            let (out, err) = tokio::try_join!(read_up_to(so, JSON_BODY_CAP), async {
                Ok(read_tail(se, STDERR_TAIL).await)
            })?;
            let status = child.wait().await.map_err(Collect::Io)?;
            Ok((status, out, err))
        };
        let result = tokio::time::timeout(self.timeout, collect).await;
        let kill = || {
            if let Some(pid) = pid {
                // SAFETY: kill(2) on our own child's process group.
                unsafe {
                    libc::kill(-(pid as i32), libc::SIGKILL);
                }
            }
        };
        let (status, out, err) = match result {
            Ok(Ok(r)) => r,
            Ok(Err(Collect::TooMuch)) => {
                kill();
                return Err(CredentialsError::Failed(format!(
                    "{what}: printed more than the {JSON_BODY_CAP}-byte limit for credentials \
                     JSON on stdout (killed)"
                )));
            }
            Ok(Err(Collect::Io(e))) => {
                kill();
                return Err(CredentialsError::Failed(format!("{what}: {e}")));
            }
            Err(_) => {
                kill();
                return Err(CredentialsError::Failed(format!(
                    "{what}: no answer within {} s (killed)",
                    self.timeout.as_secs_f64()
                )));
            }
        };
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

    /// Issue 16: a process printing endlessly is cut off at the cap and killed (long before
    /// its timeout); a megabyte of stderr is drained and costs only its tail.
    #[test]
    fn endless_output_is_cut_off_and_the_process_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let cmd = format!("echo $$ > {}; exec yes SECRET-OUT", pid_file.display());
        let e = run(&cmd, Duration::from_secs(600)).unwrap_err().to_string();
        assert!(
            e.contains("more than the 65536-byte limit") && e.contains("killed"),
            "{e}"
        );
        assert!(!e.contains("SECRET-OUT"), "{e}");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Gone, or a zombie waiting to be reaped: not running `yes` any more.
        let stopped = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        };
        let t = std::time::Instant::now();
        while !stopped() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "yes ({pid}) still runs"
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        let i = run(
            r#"head -c 1000000 /dev/zero | tr '\0' x >&2; echo '{"AccessKeyId":"a","AccessKeySecret":"s"}'"#,
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(i.credentials.access_key_id, "a");
        let e = run(
            r#"head -c 1000000 /dev/zero | tr '\0' x >&2; echo >&2; echo 'last words' >&2; exit 2"#,
            Duration::from_secs(60),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(": last words") && e.len() < 400, "{e}");
    }
}
