//! The AWS SDK configuration that every AWS client of a run shares (the standard credentials
//! chain, region, per-service endpoints such as `AWS_ENDPOINT_URL_KINESIS`), loaded once; and the
//! check that credentials exist at all, so that a run without any stops at once with one line
//! that says where it looked and how to provide them, instead of a transient-looking failure of
//! its first request.

use aws_credential_types::provider::error::CredentialsError as SdkCredentialsError;
use aws_credential_types::provider::ProvideCredentials;

/// The shared SDK configuration.
pub async fn config() -> &'static aws_config::SdkConfig {
    static CONFIG: tokio::sync::OnceCell<aws_config::SdkConfig> =
        tokio::sync::OnceCell::const_new();
    CONFIG.get_or_init(aws_config::load_from_env).await
}

/// Why credentials are unusable.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// No source of the credentials chain had any (or the chain timed out looking): exit code 3.
    #[error("no AWS credentials were found (tried: the environment variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE); profile `{profile}` in ~/.aws/config and ~/.aws/credentials, with SSO or credential_process; ECS container credentials; EC2 instance metadata). Provide them with AWS_PROFILE=NAME, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an IAM role for the task, pod or instance")]
    NotFound {
        /// The profile looked in: `AWS_PROFILE`, or `default` when it is not set.
        profile: String,
    },
    /// The credentials configuration is broken, such as a malformed profile: exit code 3.
    #[error("the AWS credentials configuration is invalid: {message}")]
    Invalid {
        /// What is wrong, with its causes.
        message: String,
    },
    /// Loading them failed otherwise, possibly for the moment (a network or service error).
    #[error("AWS credentials could not be loaded: {message}")]
    Unavailable {
        /// The SDK's error, with its causes.
        message: String,
    },
}

impl CredentialsError {
    /// A problem of the configuration (exit code 3), not of the moment.
    pub fn is_configuration(&self) -> bool {
        !matches!(self, CredentialsError::Unavailable { .. })
    }
}

/// Loads credentials once through the chain: fails when there are none, or their
/// configuration is broken.
pub async fn require_credentials() -> Result<(), CredentialsError> {
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let Some(provider) = config().await.credentials_provider() else {
        return Err(CredentialsError::NotFound { profile });
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(
            SdkCredentialsError::CredentialsNotLoaded(_) | SdkCredentialsError::ProviderTimedOut(_),
        ) => Err(CredentialsError::NotFound { profile }),
        Err(e @ SdkCredentialsError::InvalidConfiguration(_)) => Err(CredentialsError::Invalid {
            message: crate::errors::chain(&e),
        }),
        Err(e) => Err(CredentialsError::Unavailable {
            message: crate::errors::chain(&e),
        }),
    }
}
