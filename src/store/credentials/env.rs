//! Keys in environment variables: `OSS_*` (the OSS SDKs' names), `ALIBABA_CLOUD_*` (the
//! Alibaba Cloud credentials libraries' names) for `oss://`, `AWS_*` for `s3://`.

use super::{CredentialsError, System};
use crate::store::Credentials;

/// `(key id, secret, session token)` variable names of one family.
pub type Names = (&'static str, &'static str, &'static str);

pub const OSS: Names = (
    "OSS_ACCESS_KEY_ID",
    "OSS_ACCESS_KEY_SECRET",
    "OSS_SESSION_TOKEN",
);
pub const ALIBABA_CLOUD: Names = (
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
);
pub const AWS: Names = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
);

/// The keys in `names`; `NotConfigured` when neither id nor secret is set, `Failed`
/// naming the missing one when only one is.
pub fn from_vars(sys: &dyn System, names: Names) -> Result<Credentials, CredentialsError> {
    let (id_var, secret_var, token_var) = names;
    let id = sys.var(id_var);
    let secret = sys.var(secret_var);
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Credentials {
            access_key_id: id.trim().to_string(),
            access_key_secret: secret.trim().to_string(),
            session_token: sys.var(token_var).map(|t| t.trim().to_string()),
        }),
        (None, None) => Err(CredentialsError::NotConfigured(format!(
            "{id_var} and {secret_var} not set"
        ))),
        (None, Some(_)) => Err(CredentialsError::Failed(format!(
            "{secret_var} is set but {id_var} is not"
        ))),
        (Some(_), None) => Err(CredentialsError::Failed(format!(
            "{id_var} is set but {secret_var} is not"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::credentials::system::FakeSystem;

    #[test]
    fn both_or_neither() {
        let sys = FakeSystem::with_vars(&[
            ("OSS_ACCESS_KEY_ID", " ak "),
            ("OSS_ACCESS_KEY_SECRET", "sk"),
            ("OSS_SESSION_TOKEN", "tok"),
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "x"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "  "),
        ]);
        let c = from_vars(&sys, OSS).unwrap();
        assert_eq!(c.access_key_id, "ak");
        assert_eq!(c.session_token.as_deref(), Some("tok"));
        let e = from_vars(&sys, ALIBABA_CLOUD).unwrap_err();
        assert!(matches!(e, CredentialsError::Failed(_)), "{e}");
        assert!(
            e.to_string().contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
            "{e}"
        );
        assert!(matches!(
            from_vars(&sys, AWS),
            Err(CredentialsError::NotConfigured(_))
        ));
    }
}
