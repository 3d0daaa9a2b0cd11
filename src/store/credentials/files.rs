//! The two credentials files Alibaba Cloud users have, read into a [`Spec`] (what to build),
//! not yet a provider:
//!
//! - `~/.alibabacloud/credentials` (INI; path `ALIBABA_CLOUD_CREDENTIALS_FILE`), as
//!   credentials-go `providers/profile.go` reads it: a section per profile with
//!   `type = access_key | ecs_ram_role | ram_role_arn` and `access_key_id`,
//!   `access_key_secret`, `role_name`, `role_arn`, `role_session_name`, `policy`;
//! - the aliyun CLI's `~/.aliyun/config.json` (path `ALIBABA_CLOUD_CONFIG_FILE`),
//!   `providers/cli_profile.go`: `{"current": NAME, "profiles": [{"name", "mode", ...}]}`
//!   with modes `AK`, `StsToken`, `RamRoleArn`, `EcsRamRole`, `OIDC`, `External` and
//!   `ChainableRamRoleArn` (a `source_profile` assuming a role).
//!
//! Errors name the file, the profile and the field, never a value.

use std::collections::HashMap;

use super::CredentialsError;
use crate::store::Credentials;

/// What a profile asks for.
#[derive(Clone, PartialEq, Eq)]
pub enum Spec {
    Static(Credentials),
    EcsRamRole {
        role: Option<String>,
    },
    RamRoleArn {
        source: Box<Spec>,
        role_arn: String,
        session_name: Option<String>,
        policy: Option<String>,
        external_id: Option<String>,
        duration_seconds: Option<u64>,
        sts_region: Option<String>,
        vpc: bool,
    },
    Oidc {
        role_arn: String,
        provider_arn: String,
        token_file: String,
        session_name: Option<String>,
        policy: Option<String>,
        duration_seconds: Option<u64>,
        sts_region: Option<String>,
        vpc: bool,
    },
    Process {
        command: String,
    },
    /// `s3://`: AWS STS `AssumeRoleWithWebIdentity` with a token file.
    AwsWebIdentity {
        role_arn: String,
        token_file: String,
        session_name: Option<String>,
    },
    /// `s3://`: AWS STS `AssumeRole` with a source profile's credentials.
    AwsAssumeRole {
        source: Box<Spec>,
        role_arn: String,
        session_name: Option<String>,
        external_id: Option<String>,
        duration_seconds: Option<u64>,
    },
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Spec::Static(c) => write!(f, "Static({c:?})"),
            Spec::EcsRamRole { role } => write!(f, "EcsRamRole({role:?})"),
            Spec::RamRoleArn {
                source, role_arn, ..
            } => write!(f, "RamRoleArn({role_arn}, {source:?})"),
            Spec::Oidc { role_arn, .. } => write!(f, "Oidc({role_arn})"),
            Spec::Process { .. } => write!(f, "Process"),
            Spec::AwsWebIdentity { role_arn, .. } => write!(f, "AwsWebIdentity({role_arn})"),
            Spec::AwsAssumeRole {
                source, role_arn, ..
            } => write!(f, "AwsAssumeRole({role_arn}, {source:?})"),
        }
    }
}

fn failed(msg: String) -> CredentialsError {
    CredentialsError::Failed(msg)
}

/// `[section]` -> key -> value. `#` and `;` start comments; keys are lower-cased.
pub fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            out.entry(section.clone()).or_default();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v);
        }
    }
    out
}

/// Profile `name` of an INI credentials file (`file` names it in messages).
/// `NotConfigured` when the profile is absent.
pub fn ini_profile(text: &str, name: &str, file: &str) -> Result<Spec, CredentialsError> {
    let ini = parse_ini(text);
    let Some(sec) = ini.get(name) else {
        return Err(CredentialsError::NotConfigured(format!(
            "{file} has no profile [{name}]"
        )));
    };
    let what = format!("{file} [{name}]");
    let get = |k: &str| {
        sec.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let need = |k: &str| get(k).ok_or_else(|| failed(format!("{what}: {k} is missing")));
    let kind = need("type")?;
    match kind.as_str() {
        "access_key" => Ok(Spec::Static(Credentials {
            access_key_id: need("access_key_id")?,
            access_key_secret: need("access_key_secret")?,
            session_token: None,
        })),
        "sts" => Ok(Spec::Static(Credentials {
            access_key_id: need("access_key_id")?,
            access_key_secret: need("access_key_secret")?,
            session_token: Some(need("security_token")?),
        })),
        "ecs_ram_role" => Ok(Spec::EcsRamRole {
            role: get("role_name"),
        }),
        "ram_role_arn" => Ok(Spec::RamRoleArn {
            source: Box::new(Spec::Static(Credentials {
                access_key_id: need("access_key_id")?,
                access_key_secret: need("access_key_secret")?,
                session_token: None,
            })),
            role_arn: need("role_arn")?,
            session_name: get("role_session_name"),
            policy: get("policy"),
            external_id: get("external_id"),
            duration_seconds: None,
            sts_region: get("sts_region"),
            vpc: get("enable_vpc").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }),
        other => Err(failed(format!(
            "{what}: type {other:?} is not supported (access_key, sts, ecs_ram_role, ram_role_arn)"
        ))),
    }
}

/// Profile `name` (or the `current` one) of the aliyun CLI's config.json.
pub fn cli_profile(text: &str, name: Option<&str>, file: &str) -> Result<Spec, CredentialsError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        failed(format!(
            "{file}: not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let profiles = v
        .get("profiles")
        .and_then(|p| p.as_array())
        .ok_or_else(|| failed(format!("{file}: no \"profiles\" list")))?;
    let name = match name {
        Some(n) => n.to_string(),
        None => v
            .get("current")
            .and_then(|c| c.as_str())
            .filter(|c| !c.is_empty())
            .unwrap_or("default")
            .to_string(),
    };
    cli_spec(profiles, &name, file, 0)
}

fn cli_spec(
    profiles: &[serde_json::Value],
    name: &str,
    file: &str,
    depth: u32,
) -> Result<Spec, CredentialsError> {
    if depth > 8 {
        return Err(failed(format!(
            "{file}: source_profile chain through {name:?} is too long (a loop?)"
        )));
    }
    let Some(p) = profiles
        .iter()
        .find(|p| p.get("name").and_then(|n| n.as_str()) == Some(name))
    else {
        return Err(CredentialsError::NotConfigured(format!(
            "{file} has no profile {name:?}"
        )));
    };
    let what = format!("{file} profile {name:?}");
    let get = |k: &str| {
        p.get(k)
            .and_then(|v| v.as_str())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let need = |k: &str| get(k).ok_or_else(|| failed(format!("{what}: {k} is missing")));
    let duration = p
        .get("expired_seconds")
        .and_then(|d| d.as_u64())
        .filter(|d| *d > 0);
    let vpc = p
        .get("enable_vpc")
        .and_then(|b| b.as_bool())
        .unwrap_or(false);
    let mode = get("mode").unwrap_or_else(|| "AK".to_string());
    let role_arn_spec = |source: Spec| -> Result<Spec, CredentialsError> {
        Ok(Spec::RamRoleArn {
            source: Box::new(source),
            role_arn: need("ram_role_arn")?,
            session_name: get("ram_session_name"),
            policy: get("policy"),
            external_id: get("external_id"),
            duration_seconds: duration,
            sts_region: get("sts_region"),
            vpc,
        })
    };
    match mode.as_str() {
        "AK" => Ok(Spec::Static(Credentials {
            access_key_id: need("access_key_id")?,
            access_key_secret: need("access_key_secret")?,
            session_token: None,
        })),
        "StsToken" => Ok(Spec::Static(Credentials {
            access_key_id: need("access_key_id")?,
            access_key_secret: need("access_key_secret")?,
            session_token: Some(need("sts_token")?),
        })),
        "RamRoleArn" => role_arn_spec(Spec::Static(Credentials {
            access_key_id: need("access_key_id")?,
            access_key_secret: need("access_key_secret")?,
            session_token: None,
        })),
        "ChainableRamRoleArn" => {
            let source = need("source_profile")?;
            let inner = cli_spec(profiles, &source, file, depth + 1)
                .map_err(|e| failed(format!("{what}: source_profile {source:?}: {e}")))?;
            role_arn_spec(inner)
        }
        "EcsRamRole" => Ok(Spec::EcsRamRole {
            role: get("ram_role_name"),
        }),
        "OIDC" => Ok(Spec::Oidc {
            role_arn: need("ram_role_arn")?,
            provider_arn: need("oidc_provider_arn")?,
            token_file: need("oidc_token_file")?,
            session_name: get("ram_session_name"),
            policy: get("policy"),
            duration_seconds: duration,
            sts_region: get("sts_region"),
            vpc,
        }),
        "External" => Ok(Spec::Process {
            command: need("process_command")?,
        }),
        other => Err(failed(format!(
            "{what}: mode {other:?} is not supported (AK, StsToken, RamRoleArn, \
             ChainableRamRoleArn, EcsRamRole, OIDC, External)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INI: &str = "
# comment
[default]
type = access_key
access_key_id = AKID
access_key_secret = SECRET

[ecs]
type = ecs_ram_role
role_name = web

[assume]
type = ram_role_arn
access_key_id = AKID2
access_key_secret = SECRET2
role_arn = acs:ram::1:role/r
role_session_name = sess

[broken]
type = ram_role_arn
access_key_id = AKID3
access_key_secret = TOPSECRET
";

    #[test]
    fn ini_profiles() {
        match ini_profile(INI, "default", "f").unwrap() {
            Spec::Static(c) => {
                assert_eq!((c.access_key_id.as_str(), c.session_token), ("AKID", None))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ini_profile(INI, "ecs", "f").unwrap(),
            Spec::EcsRamRole {
                role: Some("web".into())
            }
        );
        match ini_profile(INI, "assume", "f").unwrap() {
            Spec::RamRoleArn {
                role_arn,
                session_name,
                source,
                ..
            } => {
                assert_eq!(role_arn, "acs:ram::1:role/r");
                assert_eq!(session_name.as_deref(), Some("sess"));
                assert!(matches!(*source, Spec::Static(_)));
            }
            other => panic!("{other:?}"),
        }
        let e = ini_profile(INI, "broken", "f").unwrap_err().to_string();
        assert!(
            e.contains("role_arn is missing") && !e.contains("TOPSECRET"),
            "{e}"
        );
        assert!(matches!(
            ini_profile(INI, "nope", "f"),
            Err(CredentialsError::NotConfigured(_))
        ));
    }

    #[test]
    fn cli_profiles() {
        let json = r#"{"current":"rrsa","profiles":[
            {"name":"default","mode":"AK","access_key_id":"A","access_key_secret":"S"},
            {"name":"sts","mode":"StsToken","access_key_id":"A","access_key_secret":"S","sts_token":"T"},
            {"name":"role","mode":"RamRoleArn","access_key_id":"A","access_key_secret":"S",
             "ram_role_arn":"arn:r","ram_session_name":"s","expired_seconds":900,"sts_region":"cn-beijing"},
            {"name":"chain","mode":"ChainableRamRoleArn","source_profile":"sts","ram_role_arn":"arn:c"},
            {"name":"ecs","mode":"EcsRamRole","ram_role_name":"web"},
            {"name":"rrsa","mode":"OIDC","ram_role_arn":"arn:o","oidc_provider_arn":"arn:p","oidc_token_file":"/t"},
            {"name":"ext","mode":"External","process_command":"helper --x"},
            {"name":"loop","mode":"ChainableRamRoleArn","source_profile":"loop","ram_role_arn":"arn:l"},
            {"name":"sso","mode":"CloudSSO"}]}"#;
        assert!(matches!(
            cli_profile(json, None, "c").unwrap(),
            Spec::Oidc { .. }
        ));
        assert!(matches!(
            cli_profile(json, Some("default"), "c").unwrap(),
            Spec::Static(_)
        ));
        match cli_profile(json, Some("role"), "c").unwrap() {
            Spec::RamRoleArn {
                duration_seconds,
                sts_region,
                ..
            } => {
                assert_eq!(duration_seconds, Some(900));
                assert_eq!(sts_region.as_deref(), Some("cn-beijing"));
            }
            other => panic!("{other:?}"),
        }
        match cli_profile(json, Some("chain"), "c").unwrap() {
            Spec::RamRoleArn { source, .. } => match *source {
                Spec::Static(c) => assert_eq!(c.session_token.as_deref(), Some("T")),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        assert_eq!(
            cli_profile(json, Some("ext"), "c").unwrap(),
            Spec::Process {
                command: "helper --x".into()
            }
        );
        let e = cli_profile(json, Some("loop"), "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("too long"), "{e}");
        let e = cli_profile(json, Some("sso"), "c").unwrap_err().to_string();
        assert!(e.contains("\"CloudSSO\" is not supported"), "{e}");
        let e = cli_profile("{\"profiles\": [", None, "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid JSON"), "{e}");
    }
}
