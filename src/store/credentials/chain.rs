//! The order sources are tried in (see the table in the module doc of [`super`] and
//! docs/credentials.md), and the one-line error naming everything tried when none yields.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::ecs::{self, EcsRamRole};
use super::env::{self, Names};
use super::files::{self, Spec};
use super::process::{self, CredentialProcess};
use super::sts::{self, AssumeRole, AssumeRoleWithOidc, Role};
use super::{CredentialHolder, CredentialsError, Fixed, Issued, Provider, RefreshPolicy, System};
use crate::store::config::{invalid, ConfigError, Scheme};

/// What the command line says about credentials; every field optional.
#[derive(Clone, Debug, Default)]
pub struct ChainOptions {
    /// `--profile`: a profile of the credentials files (else `ALIBABA_CLOUD_PROFILE`).
    pub profile: Option<String>,
    /// `--ram-role`: the ECS instance RAM role to use.
    pub ram_role: Option<String>,
    /// `--credential-process`: a command printing credentials JSON.
    pub credential_process: Option<String>,
    /// How long a credential process may take (default [`process::DEFAULT_TIMEOUT`]).
    pub credential_process_timeout: Option<Duration>,
    /// `--metadata-endpoint` (else `OSSMOUNT_METADATA_ENDPOINT`, else 100.100.100.200).
    pub metadata_endpoint: Option<String>,
    /// `--sts-endpoint` (else `OSSMOUNT_STS_ENDPOINT`, else the SDKs' rules).
    pub sts_endpoint: Option<String>,
    pub refresh: RefreshPolicy,
}

fn flag(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The credentials for `scheme`'s requests, fetched once (so a failing source fails here,
/// at start) and refreshed in the background when temporary.
pub fn resolve(
    scheme: Scheme,
    opts: &ChainOptions,
    sys: Arc<dyn System>,
) -> Result<Arc<CredentialHolder>, ConfigError> {
    match scheme {
        Scheme::S3 => resolve_s3(opts, sys),
        Scheme::Oss => Chain { opts, sys }.resolve(),
    }
}

fn resolve_s3(
    opts: &ChainOptions,
    sys: Arc<dyn System>,
) -> Result<Arc<CredentialHolder>, ConfigError> {
    let (id_var, secret_var, token_var) = env::AWS;
    let missing = match env::from_vars(&*sys, env::AWS) {
        Ok(c) => {
            return Ok(CredentialHolder::fixed(
                format!("environment ({id_var})"),
                c,
            ))
        }
        Err(CredentialsError::NotConfigured(_)) => format!("{id_var} and {secret_var}"),
        Err(CredentialsError::Failed(_)) if sys.var(id_var).is_some() => secret_var.into(),
        Err(CredentialsError::Failed(_)) => id_var.into(),
    };
    if missing.contains(" and ") {
        // Not in the environment at all: the shared files (AWS_PROFILE).
        let mut tried = Vec::new();
        if let Some((spec, label)) = aws_profile(&*sys, &mut tried)? {
            let chain = Chain {
                opts,
                sys: sys.clone(),
            };
            return chain.start(&spec, &label);
        }
        if sys.var("AWS_PROFILE").is_some() {
            return Err(invalid(format!(
                "no credentials for s3://: AWS_PROFILE is set but {}",
                tried.join("; ")
            )));
        }
    }
    Err(invalid(format!(
        "no credentials for s3://: {missing} not set in the environment (set {id_var} \
         and {secret_var}, plus {token_var} for temporary credentials, or a profile in \
         ~/.aws/credentials), or pass --no-sign-request for a public bucket"
    )))
}

/// `AWS_PROFILE` (default `default`) from `~/.aws/credentials` (static keys) or
/// `~/.aws/config` (`[profile NAME]`: static keys or `credential_process`). `role_arn`
/// profiles are refused clearly (AWS STS is not implemented).
fn aws_profile(
    sys: &dyn System,
    tried: &mut Vec<String>,
) -> Result<Option<(Spec, String)>, ConfigError> {
    let name = sys.var("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let home = sys.home();
    let files = [
        (
            sys.var("AWS_SHARED_CREDENTIALS_FILE")
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials"))),
            name.clone(),
        ),
        (
            sys.var("AWS_CONFIG_FILE")
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws/config"))),
            if name == "default" {
                name.clone()
            } else {
                format!("profile {name}")
            },
        ),
    ];
    for (path, section) in files {
        let Some(path) = path else { continue };
        let shown = path.display().to_string();
        let text = match sys.read_file(&path) {
            Ok(t) => t,
            Err(_) => {
                tried.push(format!("{shown}: not found"));
                continue;
            }
        };
        let ini = files::parse_ini(&text);
        let Some(sec) = ini.get(&section) else {
            tried.push(format!("{shown} has no [{section}]"));
            continue;
        };
        let get = |k: &str| sec.get(k).filter(|v| !v.is_empty()).cloned();
        let label = format!("AWS profile {name:?} of {shown}");
        if let (Some(id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) {
            let c = crate::store::Credentials {
                access_key_id: id,
                access_key_secret: secret,
                session_token: get("aws_session_token"),
            };
            return Ok(Some((Spec::Static(c), label)));
        }
        if let Some(command) = get("credential_process") {
            return Ok(Some((Spec::Process { command }, label)));
        }
        if get("role_arn").is_some() || get("web_identity_token_file").is_some() {
            return Err(invalid(format!(
                "{label}: role_arn and web identity profiles are not supported yet; use \
                 credential_process or static keys"
            )));
        }
        return Err(invalid(format!(
            "{label}: no aws_access_key_id/aws_secret_access_key or credential_process"
        )));
    }
    Ok(None)
}

struct Chain<'a> {
    opts: &'a ChainOptions,
    sys: Arc<dyn System>,
}

impl Chain<'_> {
    fn resolve(&self) -> Result<Arc<CredentialHolder>, ConfigError> {
        let opts = self.opts;
        let sys = &*self.sys;
        // 1. Explicit choices: used alone, their failure is the error.
        if let Some(cmd) = flag(&opts.credential_process) {
            return self.start(
                &Spec::Process {
                    command: cmd.to_string(),
                },
                "--credential-process",
            );
        }
        if let Some(role) = flag(&opts.ram_role) {
            return self.start(
                &Spec::EcsRamRole {
                    role: Some(role.to_string()),
                },
                "--ram-role",
            );
        }
        let profile = flag(&opts.profile)
            .map(str::to_string)
            .or_else(|| sys.var("ALIBABA_CLOUD_PROFILE"));
        if let Some(name) = profile {
            return self.named_profile(&name);
        }
        let mut tried: Vec<String> = Vec::new();
        // 2. Environment.
        for names in [env::OSS, env::ALIBABA_CLOUD] {
            match env::from_vars(sys, names) {
                Ok(c) => {
                    tracing::debug!("credentials from the environment ({})", names.0);
                    return Ok(CredentialHolder::fixed(env_label(names), c));
                }
                Err(CredentialsError::NotConfigured(m)) => tried.push(m),
                Err(CredentialsError::Failed(m)) => {
                    return Err(invalid(format!("credentials from the environment: {m}")))
                }
            }
        }
        // 3. RRSA / OIDC.
        let oidc_vars = [
            "ALIBABA_CLOUD_ROLE_ARN",
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        ];
        let oidc: Vec<Option<String>> = oidc_vars.iter().map(|v| sys.var(v)).collect();
        match (&oidc[0], &oidc[1], &oidc[2]) {
            (Some(role), Some(provider), Some(file)) => {
                return self.start(
                    &Spec::Oidc {
                        role_arn: role.clone(),
                        provider_arn: provider.clone(),
                        token_file: file.clone(),
                        session_name: None,
                        policy: None,
                        duration_seconds: None,
                        sts_region: None,
                        vpc: false,
                    },
                    "RRSA (ALIBABA_CLOUD_ROLE_ARN)",
                )
            }
            (None, None, None) => tried.push(format!("RRSA: {} not set", oidc_vars.join(", "))),
            _ => {
                let missing: Vec<&str> = oidc_vars
                    .iter()
                    .zip(&oidc)
                    .filter_map(|(n, v)| v.is_none().then_some(*n))
                    .collect();
                return Err(invalid(format!(
                    "credentials from RRSA: {} not set (all three of {} are needed)",
                    missing.join(" and "),
                    oidc_vars.join(", ")
                )));
            }
        }
        // 4. Files: the CLI's config.json, then the INI file (credentials-go's order).
        if let Some(spec) = self.file_profile(None, &mut tried)? {
            return self.start(&spec.0, &spec.1);
        }
        // 6. ECS instance RAM role.
        if sys
            .var("ALIBABA_CLOUD_ECS_METADATA_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            tried.push("ECS RAM role: disabled by ALIBABA_CLOUD_ECS_METADATA_DISABLED".into());
        } else {
            let spec = Spec::EcsRamRole {
                role: sys.var("ALIBABA_CLOUD_ECS_METADATA"),
            };
            match self.start_raw(&spec) {
                Ok(h) => return Ok(h),
                Err(e) => tried.push(format!("ECS RAM role: {e}")),
            }
        }
        Err(invalid(format!(
            "no credentials for oss://: tried {}; set credentials (docs/credentials.md) or pass \
             --no-sign-request for a public bucket",
            tried.join("; ")
        )))
    }

    fn cli_path(&self) -> Option<PathBuf> {
        self.sys
            .var("ALIBABA_CLOUD_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| self.sys.home().map(|h| h.join(".aliyun/config.json")))
    }

    fn ini_path(&self) -> Option<PathBuf> {
        self.sys
            .var("ALIBABA_CLOUD_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| self.sys.home().map(|h| h.join(".alibabacloud/credentials")))
    }

    /// The profile `name` (or each file's default) from the files: `Ok(None)` when no
    /// file has it (reasons pushed to `tried`), an error when a file has it but it is
    /// broken.
    fn file_profile(
        &self,
        name: Option<&str>,
        tried: &mut Vec<String>,
    ) -> Result<Option<(Spec, String)>, ConfigError> {
        let cli_disabled = self
            .sys
            .var("ALIBABA_CLOUD_CLI_PROFILE_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        type Parse = fn(&str, Option<&str>, &str) -> Result<Spec, CredentialsError>;
        let cli: Parse = files::cli_profile;
        let ini: Parse = |t, n, f| files::ini_profile(t, n.unwrap_or("default"), f);
        let candidates = [
            (
                self.cli_path().filter(|_| !cli_disabled),
                cli,
                "aliyun CLI config",
            ),
            (self.ini_path(), ini, "credentials file"),
        ];
        for (path, parse, kind) in candidates {
            let Some(path) = path else { continue };
            let shown = path.display().to_string();
            let text = match self.sys.read_file(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tried.push(format!("{kind} {shown}: not found"));
                    continue;
                }
                Err(e) => return Err(invalid(format!("cannot read {kind} {shown}: {e}"))),
            };
            match parse(&text, name, &shown) {
                Ok(spec) => {
                    let label = match name {
                        Some(n) => format!("profile {n:?} of {shown}"),
                        None => format!("{kind} {shown}"),
                    };
                    return Ok(Some((spec, label)));
                }
                Err(CredentialsError::NotConfigured(m)) => tried.push(m),
                Err(CredentialsError::Failed(m)) => return Err(invalid(m)),
            }
        }
        Ok(None)
    }

    fn named_profile(&self, name: &str) -> Result<Arc<CredentialHolder>, ConfigError> {
        let mut tried = Vec::new();
        match self.file_profile(Some(name), &mut tried)? {
            Some((spec, label)) => self.start(&spec, &label),
            None => Err(invalid(format!(
                "profile {name:?} (--profile or ALIBABA_CLOUD_PROFILE) not found: {}",
                tried.join("; ")
            ))),
        }
    }

    /// Build and start `spec`; a failure is the command's error, labelled.
    fn start(&self, spec: &Spec, label: &str) -> Result<Arc<CredentialHolder>, ConfigError> {
        if let Spec::Static(c) = spec {
            tracing::debug!("credentials from {label}");
            return Ok(CredentialHolder::fixed(label.to_string(), c.clone()));
        }
        self.start_raw(spec)
            .map_err(|e| invalid(format!("credentials from {label}: {e}")))
    }

    fn start_raw(&self, spec: &Spec) -> Result<Arc<CredentialHolder>, CredentialsError> {
        let provider = self.provider(spec, "profile keys");
        CredentialHolder::start(provider, self.opts.refresh.clone(), self.sys.clone())
    }

    fn provider(&self, spec: &Spec, label: &str) -> Arc<dyn Provider> {
        let sys = &self.sys;
        match spec {
            Spec::Static(c) => Arc::new(Fixed {
                issued: Issued::fixed(c.clone()),
                source: format!("{label} {}", super::key_id_tail(&c.access_key_id)),
            }),
            Spec::EcsRamRole { role } => Arc::new(EcsRamRole::new(
                ecs::endpoint(flag(&self.opts.metadata_endpoint), &**sys),
                role.clone(),
                &**sys,
            )),
            Spec::RamRoleArn {
                source,
                role_arn,
                session_name,
                policy,
                external_id,
                duration_seconds,
                sts_region,
                vpc,
            } => {
                let mut role = Role::new(role_arn, session_name.clone(), &**sys);
                role.policy = policy.clone();
                role.external_id = external_id.clone();
                if let Some(d) = duration_seconds {
                    role.duration_seconds = *d;
                }
                Arc::new(AssumeRole::new(
                    self.provider(source, "the key"),
                    role,
                    sts::endpoint(
                        flag(&self.opts.sts_endpoint),
                        sts_region.as_deref(),
                        *vpc,
                        &**sys,
                    ),
                    sys.clone(),
                ))
            }
            Spec::Oidc {
                role_arn,
                provider_arn,
                token_file,
                session_name,
                policy,
                duration_seconds,
                sts_region,
                vpc,
            } => {
                let mut role = Role::new(role_arn, session_name.clone(), &**sys);
                role.policy = policy.clone();
                if let Some(d) = duration_seconds {
                    role.duration_seconds = *d;
                }
                Arc::new(AssumeRoleWithOidc::new(
                    role,
                    provider_arn.clone(),
                    PathBuf::from(token_file),
                    sts::endpoint(
                        flag(&self.opts.sts_endpoint),
                        sts_region.as_deref(),
                        *vpc,
                        &**sys,
                    ),
                    sys.clone(),
                ))
            }
            Spec::Process { command } => Arc::new(CredentialProcess {
                command: command.clone(),
                timeout: self
                    .opts
                    .credential_process_timeout
                    .unwrap_or(process::DEFAULT_TIMEOUT),
            }),
        }
    }
}

fn env_label(names: Names) -> String {
    format!("environment ({})", names.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::credentials::system::FakeSystem;

    fn resolve_with(sys: FakeSystem, opts: &ChainOptions) -> Result<Arc<CredentialHolder>, String> {
        resolve(Scheme::Oss, opts, Arc::new(sys)).map_err(|e| e.to_string())
    }

    const NO_ECS: (&str, &str) = ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true");

    #[test]
    fn environment_first_oss_names_before_alibaba_cloud_names() {
        let sys = FakeSystem::with_vars(&[
            ("OSS_ACCESS_KEY_ID", "oss-id"),
            ("OSS_ACCESS_KEY_SECRET", "s"),
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ali-id"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s"),
        ]);
        let h = resolve_with(sys, &ChainOptions::default()).unwrap();
        assert_eq!(h.current().credentials.access_key_id, "oss-id");
        let sys = FakeSystem::with_vars(&[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ali-id"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s"),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "t"),
        ]);
        let h = resolve_with(sys, &ChainOptions::default()).unwrap();
        assert_eq!(h.current().credentials.session_token.as_deref(), Some("t"));
        assert_eq!(h.source(), "environment (ALIBABA_CLOUD_ACCESS_KEY_ID)");
    }

    #[test]
    fn files_then_nothing() {
        let ini = "[default]\ntype = access_key\naccess_key_id = INI-ID\naccess_key_secret = s\n";
        let sys = FakeSystem::with_vars(&[("HOME", "/h"), NO_ECS])
            .file("/h/.alibabacloud/credentials", ini);
        let h = resolve_with(sys, &ChainOptions::default()).unwrap();
        assert_eq!(h.current().credentials.access_key_id, "INI-ID");
        // The CLI config wins over the INI file.
        let cli = r#"{"current":"p","profiles":[{"name":"p","mode":"AK","access_key_id":"CLI-ID","access_key_secret":"s"}]}"#;
        let sys = FakeSystem::with_vars(&[("HOME", "/h"), NO_ECS])
            .file("/h/.alibabacloud/credentials", ini)
            .file("/h/.aliyun/config.json", cli);
        let h = resolve_with(sys, &ChainOptions::default()).unwrap();
        assert_eq!(h.current().credentials.access_key_id, "CLI-ID");
        // A named profile from the INI file, by flag or variable, before the environment.
        let two = format!(
            "{ini}[other]\ntype = access_key\naccess_key_id = OTHER\naccess_key_secret = s\n"
        );
        let sys = FakeSystem::with_vars(&[
            ("ALIBABA_CLOUD_CREDENTIALS_FILE", "/c"),
            ("ALIBABA_CLOUD_PROFILE", "other"),
            ("OSS_ACCESS_KEY_ID", "env"),
            ("OSS_ACCESS_KEY_SECRET", "env"),
        ])
        .file("/c", &two);
        let h = resolve_with(sys, &ChainOptions::default()).unwrap();
        assert_eq!(h.current().credentials.access_key_id, "OTHER");
        let sys =
            FakeSystem::with_vars(&[("ALIBABA_CLOUD_CREDENTIALS_FILE", "/c")]).file("/c", &two);
        let opts = ChainOptions {
            profile: Some("missing".into()),
            ..Default::default()
        };
        let e = resolve_with(sys, &opts).unwrap_err();
        assert!(
            e.contains("profile \"missing\"") && e.contains("/c has no profile"),
            "{e}"
        );
        // Nothing at all: one line naming what was tried.
        let e = resolve_with(
            FakeSystem::with_vars(&[("HOME", "/h"), NO_ECS]),
            &ChainOptions::default(),
        )
        .unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        for needle in [
            "OSS_ACCESS_KEY_ID and OSS_ACCESS_KEY_SECRET not set",
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "RRSA",
            "/h/.aliyun/config.json: not found",
            "/h/.alibabacloud/credentials: not found",
            "ECS RAM role: disabled",
            "--no-sign-request",
        ] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn partial_settings_are_errors_not_fall_throughs() {
        let e = resolve_with(
            FakeSystem::with_vars(&[("OSS_ACCESS_KEY_ID", "a"), NO_ECS]),
            &ChainOptions::default(),
        )
        .unwrap_err();
        assert!(
            e.contains("OSS_ACCESS_KEY_ID is set but OSS_ACCESS_KEY_SECRET is not"),
            "{e}"
        );
        let e = resolve_with(
            FakeSystem::with_vars(&[("ALIBABA_CLOUD_ROLE_ARN", "a"), NO_ECS]),
            &ChainOptions::default(),
        )
        .unwrap_err();
        assert!(
            e.contains("ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE not set"),
            "{e}"
        );
        let sys = FakeSystem::with_vars(&[
            ("ALIBABA_CLOUD_ROLE_ARN", "a"),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "b"),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/missing"),
        ]);
        let e = resolve_with(sys, &ChainOptions::default()).unwrap_err();
        assert!(
            e.contains("credentials from RRSA") && e.contains("/missing"),
            "{e}"
        );
    }

    #[test]
    fn metadata_service_down_is_reported_quickly() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let opts = ChainOptions {
            metadata_endpoint: Some(format!("http://{addr}")),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let e = resolve_with(FakeSystem::default(), &opts).unwrap_err();
        assert!(
            e.contains("ECS RAM role") && e.contains(&addr.to_string()),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        let opts = ChainOptions {
            ram_role: Some("web".into()),
            ..opts
        };
        let e = resolve_with(FakeSystem::default(), &opts).unwrap_err();
        assert!(e.starts_with("credentials from --ram-role: "), "{e}");
    }

    #[test]
    fn s3_profiles() {
        let creds = "[default]\naws_access_key_id = AKIADEF\naws_secret_access_key = s\n";
        let config = "[profile proc]\ncredential_process = echo x\n[profile role]\nrole_arn = arn:aws:iam::1:role/r\n";
        let sys = || {
            FakeSystem::with_vars(&[("HOME", "/h")])
                .file("/h/.aws/credentials", creds)
                .file("/h/.aws/config", config)
        };
        let h = resolve(Scheme::S3, &ChainOptions::default(), Arc::new(sys())).unwrap();
        assert_eq!(h.current().credentials.access_key_id, "AKIADEF");
        let mut tried = Vec::new();
        let mut s = sys();
        s.vars.insert("AWS_PROFILE".into(), "proc".into());
        let spec = aws_profile(&s, &mut tried).unwrap().unwrap().0;
        assert_eq!(
            spec,
            Spec::Process {
                command: "echo x".into()
            }
        );
        s.vars.insert("AWS_PROFILE".into(), "role".into());
        let e = aws_profile(&s, &mut tried).unwrap_err().to_string();
        assert!(e.contains("not supported yet"), "{e}");
        s.vars.insert("AWS_PROFILE".into(), "nope".into());
        let e = resolve(Scheme::S3, &ChainOptions::default(), Arc::new(s))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("AWS_PROFILE is set") && e.contains("no [profile nope]"),
            "{e}"
        );
    }

    #[test]
    fn s3_reads_aws_variables_only() {
        let sys = Arc::new(FakeSystem::with_vars(&[
            ("OSS_ACCESS_KEY_ID", "a"),
            ("OSS_ACCESS_KEY_SECRET", "b"),
        ]));
        let e = resolve(Scheme::S3, &ChainOptions::default(), sys)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set"),
            "{e}"
        );
    }
}
