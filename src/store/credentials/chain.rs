//! The order sources are tried in (see the table in the module doc of [`super`] and
//! docs/credentials.md), and the one-line error naming everything tried when none yields.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::aws_sts::{self, AssumeRoleWithWebIdentity};
use super::container;
use super::ecs::{self, EcsRamRole};
use super::env::{self, Names};
use super::files::{self, Spec};
use super::imds::{self, InstanceProfile};
use super::process::{self, CredentialProcess};
use super::sts::{self, AssumeRole, AssumeRoleWithOidc, Role};
use super::uri::{self, CredentialsUri};
use super::web::Net;
use super::{CredentialHolder, CredentialsError, Fixed, Issued, Provider, RefreshPolicy, System};
use crate::store::config::{invalid, ConfigError, Scheme};
use crate::store::tls::Trust;

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
    /// The CA files the object client trusts (`--ca-bundle`, `AWS_CA_BUNDLE`,
    /// `SSL_CERT_FILE`): every credential client trusts them too ([`web`]).
    pub trust: Trust,
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
    let net = Net::new(&opts.trust)?;
    match scheme {
        Scheme::S3 => resolve_s3(opts, sys, net),
        Scheme::Oss => Chain { opts, sys, net }.resolve(),
    }
}

/// `s3://` in botocore's order (`create_credential_resolver`): the environment keys, then
/// the profile (`AWS_PROFILE`, else `default`) of `~/.aws/config` and `~/.aws/credentials`
/// when it assumes a role (`role_arn` + `source_profile`), then web identity (the
/// `AWS_WEB_IDENTITY_TOKEN_FILE` / `AWS_ROLE_ARN` / `AWS_ROLE_SESSION_NAME` variables,
/// each else the profile's `web_identity_token_file` / `role_arn` / `role_session_name`),
/// then the profile's static keys or `credential_process`, then the container endpoint,
/// then the EC2 instance profile (IMDS).
fn resolve_s3(
    opts: &ChainOptions,
    sys: Arc<dyn System>,
    net: Net,
) -> Result<Arc<CredentialHolder>, ConfigError> {
    let (id_var, secret_var, _) = env::AWS;
    let mut tried = Vec::new();
    match env::from_vars(&*sys, env::AWS) {
        Ok(c) => {
            tracing::debug!("credentials from the environment ({id_var})");
            return Ok(CredentialHolder::fixed(env_label(env::AWS), c));
        }
        Err(CredentialsError::NotConfigured(m)) => tried.push(m),
        Err(CredentialsError::Failed(m)) => {
            return Err(invalid(format!("credentials from the environment: {m}")))
        }
    }
    let chain = Chain {
        opts,
        sys: sys.clone(),
        net,
    };
    if let Some((spec, label)) = aws_profile(&*sys, &mut tried)? {
        return chain.start(&spec, &label);
    }
    match container::from_env(sys.clone(), &chain.net) {
        Ok(Some(p)) => {
            return CredentialHolder::start(Arc::new(p), opts.refresh.clone(), sys.clone())
                .map_err(|e| invalid(format!("credentials from the container endpoint: {e}")))
        }
        Ok(None) => tried
            .push("container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI not set".into()),
        Err(e) => {
            return Err(invalid(format!(
                "credentials from the container endpoint: {e}"
            )))
        }
    }
    if imds::disabled(&*sys) {
        tried.push("EC2 instance profile: disabled by AWS_EC2_METADATA_DISABLED".into());
    } else {
        let p = InstanceProfile::new(
            imds::endpoint(flag(&opts.metadata_endpoint), &*sys),
            &*sys,
            &chain.net,
        );
        match CredentialHolder::start(Arc::new(p), opts.refresh.clone(), sys.clone()) {
            Ok(h) => return Ok(h),
            Err(e) => tried.push(format!("EC2 instance profile: {e}")),
        }
    }
    Err(invalid(format!(
        "no credentials for s3://: tried {}; set {id_var} and {secret_var}, a profile in \
         ~/.aws/credentials (docs/credentials.md), or pass --no-sign-request for a public bucket",
        tried.join("; ")
    )))
}

/// One profile's settings, the config file's overridden by the credentials file's.
type Profile = HashMap<String, String>;

/// Every profile of `~/.aws/config` (`[profile NAME]`, `[default]`; path
/// `AWS_CONFIG_FILE`) and `~/.aws/credentials` (`[NAME]`; `AWS_SHARED_CREDENTIALS_FILE`),
/// merged as botocore merges them; the files' names for messages.
fn aws_profiles(
    sys: &dyn System,
    tried: &mut Vec<String>,
) -> Result<(HashMap<String, Profile>, String), ConfigError> {
    let home = sys.home();
    let config = sys
        .var("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
    let credentials = sys
        .var("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
    let mut out: HashMap<String, Profile> = HashMap::new();
    let mut shown = Vec::new();
    for (path, is_config) in [(config, true), (credentials, false)] {
        let Some(path) = path else { continue };
        let name = path.display().to_string();
        let text = match sys.read_file(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tried.push(format!("{name}: not found"));
                continue;
            }
            Err(e) => return Err(invalid(format!("cannot read {name}: {e}"))),
        };
        shown.push(name);
        for (section, values) in files::parse_ini(&text) {
            let profile = if is_config {
                match section.strip_prefix("profile ") {
                    Some(p) => p.trim().to_string(),
                    None if section == "default" => section,
                    None => continue, // [sso-session x], [services x]
                }
            } else {
                section
            };
            let entry = out.entry(profile).or_default();
            for (k, v) in values {
                if !v.is_empty() {
                    entry.insert(k, v);
                }
            }
        }
    }
    Ok((out, shown.join(" and ")))
}

/// The profile's source (see [`resolve_s3`] for the order), or web identity from the
/// variables alone: `Ok(None)` to go on with the container endpoint and IMDS.
fn aws_profile(
    sys: &dyn System,
    tried: &mut Vec<String>,
) -> Result<Option<(Spec, String)>, ConfigError> {
    let explicit = sys.var("AWS_PROFILE");
    let name = explicit.clone().unwrap_or_else(|| "default".into());
    let (profiles, files_shown) = aws_profiles(sys, tried)?;
    let profile = profiles.get(&name);
    if explicit.is_some() && profile.is_none() {
        return Err(invalid(format!(
            "no credentials for s3://: AWS_PROFILE is set but there is no [profile {name}] \
             ({}{})",
            if files_shown.is_empty() {
                "no AWS files found; "
            } else {
                ""
            },
            tried.join("; ")
        )));
    }
    let label = format!("AWS profile {name:?} of {files_shown}");
    let get = |k: &str| profile.and_then(|p| p.get(k)).cloned();
    // 1. A role assumed with a source profile's keys.
    if get("role_arn").is_some()
        && (get("source_profile").is_some() || get("credential_source").is_some())
    {
        let spec =
            assume_role_spec(&profiles, &name, 0).map_err(|e| invalid(format!("{label}: {e}")))?;
        return Ok(Some((spec, label)));
    }
    // 2. Web identity: each variable, else the profile's setting.
    let token_file = sys
        .var("AWS_WEB_IDENTITY_TOKEN_FILE")
        .or_else(|| get("web_identity_token_file"));
    if let Some(token_file) = token_file {
        let Some(role_arn) = sys.var("AWS_ROLE_ARN").or_else(|| get("role_arn")) else {
            return Err(invalid(
                "credentials from web identity: a web identity token file is set but no role \
                 (set AWS_ROLE_ARN or the profile's role_arn)",
            ));
        };
        let spec = Spec::AwsWebIdentity {
            role_arn,
            token_file,
            session_name: sys
                .var("AWS_ROLE_SESSION_NAME")
                .or_else(|| get("role_session_name")),
        };
        let label = if sys.var("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() {
            "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)".to_string()
        } else {
            label
        };
        return Ok(Some((spec, label)));
    }
    tried.push("web identity: AWS_WEB_IDENTITY_TOKEN_FILE not set".into());
    // 3. Static keys or a credential process.
    let Some(p) = profile else {
        tried.push(format!("no AWS profile [{name}]"));
        return Ok(None);
    };
    match static_or_process(p) {
        Some(spec) => Ok(Some((spec, label))),
        None => {
            tried.push(format!("{label}: no keys, credential_process or role_arn"));
            Ok(None)
        }
    }
}

fn static_or_process(p: &Profile) -> Option<Spec> {
    if let (Some(id), Some(secret)) = (p.get("aws_access_key_id"), p.get("aws_secret_access_key")) {
        return Some(Spec::Static(crate::store::Credentials {
            access_key_id: id.clone(),
            access_key_secret: secret.clone(),
            session_token: p.get("aws_session_token").cloned(),
        }));
    }
    p.get("credential_process")
        .map(|c| Spec::Process { command: c.clone() })
}

/// Profile `name` with `role_arn`: its source (`source_profile`, followed as far as 8
/// profiles) assumes the role. `credential_source` is not supported (a clear error).
fn assume_role_spec(
    profiles: &HashMap<String, Profile>,
    name: &str,
    depth: u32,
) -> Result<Spec, String> {
    if depth > 8 {
        return Err(format!(
            "source_profile chain through {name:?} is too long (a loop?)"
        ));
    }
    let p = profiles
        .get(name)
        .ok_or_else(|| format!("source_profile {name:?} is not a profile of the AWS files"))?;
    let Some(role_arn) = p.get("role_arn").cloned() else {
        return static_or_process(p).ok_or_else(|| {
            format!("source_profile {name:?} has no keys, credential_process or role_arn")
        });
    };
    if p.contains_key("credential_source") {
        return Err(format!(
            "profile {name:?}: credential_source is not supported; use source_profile (or the \
             environment, container or instance credentials directly)"
        ));
    }
    if let Some(token_file) = p.get("web_identity_token_file") {
        // A role assumed with web identity (as the source of another, or at the top).
        return Ok(Spec::AwsWebIdentity {
            role_arn,
            token_file: token_file.clone(),
            session_name: p.get("role_session_name").cloned(),
        });
    }
    let Some(src) = p.get("source_profile") else {
        return Err(format!(
            "profile {name:?} has role_arn but no source_profile"
        ));
    };
    let source = if src == name {
        // botocore: a profile naming itself uses its own static keys.
        static_or_process(p)
            .ok_or_else(|| format!("profile {name:?} is its own source_profile but has no keys"))?
    } else {
        assume_role_spec(profiles, src, depth + 1)?
    };
    Ok(Spec::AwsAssumeRole {
        source: Box::new(source),
        role_arn,
        session_name: p.get("role_session_name").cloned(),
        external_id: p.get("external_id").cloned(),
        duration_seconds: p.get("duration_seconds").and_then(|d| d.parse().ok()),
    })
}

struct Chain<'a> {
    opts: &'a ChainOptions,
    sys: Arc<dyn System>,
    /// Handed to every client a source builds.
    net: Net,
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
        // 7. A credentials URI, after the ECS RAM role as in the SDKs' default chains.
        match sys.var(uri::VAR) {
            None => tried.push(format!("{} not set", uri::VAR)),
            Some(u) => {
                let provider = CredentialsUri::new(&u, &self.net)
                    .map_err(|e| invalid(format!("credentials from {}: {e}", uri::VAR)))?;
                return CredentialHolder::start(
                    Arc::new(provider),
                    self.opts.refresh.clone(),
                    self.sys.clone(),
                )
                .map_err(|e| invalid(format!("credentials from {}: {e}", uri::VAR)));
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
                &self.net,
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
                    &self.net,
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
                    &self.net,
                ))
            }
            Spec::AwsWebIdentity {
                role_arn,
                token_file,
                session_name,
            } => Arc::new(AssumeRoleWithWebIdentity::new(
                role_arn,
                PathBuf::from(token_file),
                session_name.clone(),
                aws_sts::endpoint(flag(&self.opts.sts_endpoint), &**sys),
                sys.clone(),
                &self.net,
            )),
            Spec::AwsAssumeRole {
                source,
                role_arn,
                session_name,
                external_id,
                duration_seconds,
            } => {
                let mut p = aws_sts::AssumeRole::new(
                    self.provider(source, "the source profile's key"),
                    role_arn,
                    session_name.clone(),
                    aws_sts::endpoint(flag(&self.opts.sts_endpoint), &**sys),
                    sys.clone(),
                    &self.net,
                );
                p.external_id = external_id.clone();
                p.duration_seconds = *duration_seconds;
                Arc::new(p)
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
            "ALIBABA_CLOUD_CREDENTIALS_URI not set",
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
    fn credentials_uri_comes_after_the_ecs_ram_role() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let uri = format!("http://{addr}/creds?sig=SECRET-Q");
        // ECS disabled: the URI is asked, and its failure is the error, naming it.
        let sys = FakeSystem::with_vars(&[NO_ECS, ("ALIBABA_CLOUD_CREDENTIALS_URI", &uri)]);
        let e = resolve_with(sys, &ChainOptions::default()).unwrap_err();
        assert!(
            e.starts_with("credentials from ALIBABA_CLOUD_CREDENTIALS_URI: credentials URI ")
                && e.contains(&format!("http://{addr}/creds"))
                && !e.contains("SECRET"),
            "{e}"
        );
        // A file profile comes first: the URI is not asked.
        let ini = "[default]\ntype = access_key\naccess_key_id = INI-ID\naccess_key_secret = s\n";
        let sys = FakeSystem::with_vars(&[
            ("HOME", "/h"),
            NO_ECS,
            ("ALIBABA_CLOUD_CREDENTIALS_URI", &uri),
        ])
        .file("/h/.alibabacloud/credentials", ini);
        let h = resolve_with(sys, &ChainOptions::default()).unwrap();
        assert_eq!(h.current().credentials.access_key_id, "INI-ID");
        let sys = FakeSystem::with_vars(&[NO_ECS, ("ALIBABA_CLOUD_CREDENTIALS_URI", "nonsense")]);
        let e = resolve_with(sys, &ChainOptions::default()).unwrap_err();
        assert!(e.contains("is not a URL"), "{e}");
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

    const NO_IMDS: (&str, &str) = ("AWS_EC2_METADATA_DISABLED", "true");

    fn s3_spec(sys: &FakeSystem) -> Result<Option<Spec>, String> {
        let mut tried = Vec::new();
        aws_profile(sys, &mut tried)
            .map(|o| o.map(|(s, _)| s))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn s3_profiles() {
        let creds = "[default]\naws_access_key_id = AKIADEF\naws_secret_access_key = s\n\
                     [src]\naws_access_key_id = AKIASRC\naws_secret_access_key = s\n";
        let config = "[default]\nregion = us-east-1\n[profile proc]\ncredential_process = echo x\n\
                      [profile role]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = src\n\
                      external_id = ext\n[profile chained]\nrole_arn = arn:aws:iam::1:role/c\n\
                      source_profile = role\n[profile web]\nrole_arn = arn:aws:iam::1:role/w\n\
                      web_identity_token_file = /tok\n[profile sourced]\nrole_arn = a\n\
                      credential_source = Ec2InstanceMetadata\n[profile bare]\nrole_arn = a\n\
                      [profile loop]\nrole_arn = a\nsource_profile = loop2\n\
                      [profile loop2]\nrole_arn = b\nsource_profile = loop\n";
        let sys = |profile: Option<&str>| {
            let mut s = FakeSystem::with_vars(&[("HOME", "/h"), NO_IMDS])
                .file("/h/.aws/credentials", creds)
                .file("/h/.aws/config", config);
            if let Some(p) = profile {
                s.vars.insert("AWS_PROFILE".into(), p.into());
            }
            s
        };
        let h = resolve(Scheme::S3, &ChainOptions::default(), Arc::new(sys(None))).unwrap();
        assert_eq!(h.current().credentials.access_key_id, "AKIADEF");
        assert_eq!(
            s3_spec(&sys(Some("proc"))).unwrap(),
            Some(Spec::Process {
                command: "echo x".into()
            })
        );
        match s3_spec(&sys(Some("chained"))).unwrap().unwrap() {
            Spec::AwsAssumeRole {
                role_arn, source, ..
            } => {
                assert_eq!(role_arn, "arn:aws:iam::1:role/c");
                match *source {
                    Spec::AwsAssumeRole {
                        role_arn,
                        source,
                        external_id,
                        ..
                    } => {
                        assert_eq!(role_arn, "arn:aws:iam::1:role/r");
                        assert_eq!(external_id.as_deref(), Some("ext"));
                        assert!(
                            matches!(*source, Spec::Static(ref c) if c.access_key_id == "AKIASRC")
                        );
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s3_spec(&sys(Some("web"))).unwrap(),
            Some(Spec::AwsWebIdentity {
                role_arn: "arn:aws:iam::1:role/w".into(),
                token_file: "/tok".into(),
                session_name: None
            })
        );
        let e = s3_spec(&sys(Some("sourced"))).unwrap_err();
        assert!(e.contains("credential_source is not supported"), "{e}");
        let e = s3_spec(&sys(Some("loop"))).unwrap_err();
        assert!(e.contains("too long"), "{e}");
        // role_arn alone is not a source: on to the container endpoint and IMDS.
        assert_eq!(s3_spec(&sys(Some("bare"))).unwrap(), None);
        let e = resolve(
            Scheme::S3,
            &ChainOptions::default(),
            Arc::new(sys(Some("nope"))),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("AWS_PROFILE is set") && e.contains("no [profile nope]"),
            "{e}"
        );
    }

    #[test]
    fn s3_web_identity_variables_win_over_profile_keys() {
        let creds = "[default]\naws_access_key_id = AKIADEF\naws_secret_access_key = s\n";
        let mut s = FakeSystem::with_vars(&[
            ("HOME", "/h"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/env"),
            ("AWS_ROLE_SESSION_NAME", "sess"),
        ])
        .file("/h/.aws/credentials", creds);
        assert_eq!(
            s3_spec(&s).unwrap(),
            Some(Spec::AwsWebIdentity {
                role_arn: "arn:aws:iam::1:role/env".into(),
                token_file: "/var/run/token".into(),
                session_name: Some("sess".into())
            })
        );
        s.vars.remove("AWS_ROLE_ARN");
        let e = s3_spec(&s).unwrap_err();
        assert!(e.contains("set AWS_ROLE_ARN"), "{e}");
    }

    #[test]
    fn s3_nothing_names_every_source_tried() {
        let e = resolve(
            Scheme::S3,
            &ChainOptions::default(),
            Arc::new(FakeSystem::with_vars(&[("HOME", "/h"), NO_IMDS])),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains('\n'), "{e}");
        for needle in [
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set",
            "/h/.aws/config: not found",
            "AWS_WEB_IDENTITY_TOKEN_FILE not set",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "disabled by AWS_EC2_METADATA_DISABLED",
            "--no-sign-request",
        ] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn s3_reads_aws_variables_only() {
        let sys = Arc::new(FakeSystem::with_vars(&[
            ("OSS_ACCESS_KEY_ID", "a"),
            ("OSS_ACCESS_KEY_SECRET", "b"),
            NO_IMDS,
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
