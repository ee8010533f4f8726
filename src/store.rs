//! Object store locations: a local folder (`/path`, `file:///path`) or S3 (`s3://bucket/prefix`),
//! opened through `object_store` with the standard AWS environment (credentials, region,
//! `AWS_ENDPOINT_URL_S3` for S3-compatible stores). object_store retries S3 calls with backoff.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, AwsCredential, S3CopyIfNotExists};
use object_store::local::LocalFileSystem;
use object_store::path::{Path, PathPart};
use object_store::{ClientOptions, CredentialProvider, RetryConfig};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};

/// Server-side encryption of written objects.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sse {
    /// The bucket's default.
    #[default]
    None,
    /// SSE-S3 (AES256).
    Aes256,
    /// SSE-KMS with `kms_key_id` (or the account's default key when unset).
    Kms,
}

/// S3 settings (validated config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// Region of the buckets; `None`: the environment's (`AWS_REGION`).
    pub region: Option<String>,
    /// Endpoint URL of an S3-compatible store; it wins over `AWS_ENDPOINT_URL_S3`. `None`: that
    /// variable's, else AWS's own endpoint.
    pub endpoint: Option<String>,
    /// Allow plain HTTP endpoints (local test servers); `AWS_ALLOW_HTTP=true` allows them too.
    pub allow_http: bool,
    /// Server-side encryption of written objects.
    pub sse: Sse,
    /// KMS key for [`Sse::Kms`]; `None`: the account's default key.
    pub kms_key_id: Option<String>,
    /// Use an S3 Bucket Key with [`Sse::Kms`] (ignored otherwise).
    pub bucket_key: bool,
    /// Retries and timeouts of S3 requests.
    pub retry: Retry,
}

/// How object_store retries S3 requests (its own retry loop; ddb-lake adds none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Most retries of one failed request (5xx, 429/SlowDown, cut connections, timeouts of
    /// idempotent requests), with exponential backoff (`[s3] max_retries`, default 10).
    pub max_retries: usize,
    /// No retry starts later than this after the first attempt (`[s3] retry_timeout`, default
    /// 3 minutes).
    pub retry_timeout: std::time::Duration,
    /// Time limit of one request, an upload part included (`[s3] request_timeout`, default 30s).
    pub request_timeout: std::time::Duration,
    /// Time limit of setting up a connection (`[s3] connect_timeout`, default 5s).
    pub connect_timeout: std::time::Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_retries: 10,
            retry_timeout: std::time::Duration::from_secs(180),
            request_timeout: std::time::Duration::from_secs(30),
            connect_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// Why a location could not be opened or an object operation on it failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A location that is not a local path, a `file://` URL or an `s3://bucket/prefix` URL
    /// (a configuration error).
    #[error("`{url}`: {problem}")]
    BadUrl {
        /// The location as given.
        url: String,
        /// What is wrong with it, and the forms that are accepted.
        problem: String,
    },
    /// object_store refused to set up the store (the S3 client, or the local folder's root).
    #[error("cannot open {url}: {source}")]
    Open {
        /// The location as given.
        url: String,
        /// object_store's error.
        source: object_store::Error,
    },
    /// A local folder (and its missing parents) could not be created.
    #[error("cannot create folder {path}: {source}")]
    CreateDir {
        /// The folder's path as given.
        path: String,
        /// The file system error.
        source: std::io::Error,
    },
    /// A request on an object or prefix failed (on S3, after object_store's own retries).
    #[error("{op} {url}: {source}")]
    Io {
        /// What was being done, for the message: `reading`, `writing`, `checking` (the
        /// object's size) or `listing`.
        op: &'static str,
        /// The URL of the object, or of the prefix listed.
        url: String,
        /// object_store's error.
        source: object_store::Error,
    },
}

impl StoreError {
    /// A wrong location given by the user (exit code 3), not a failure of the store.
    pub fn is_configuration(&self) -> bool {
        matches!(self, StoreError::BadUrl { .. })
    }
}

/// S3 credentials from the AWS SDK's default chain (environment, `~/.aws` profiles and SSO,
/// credential processes, web identity, container and instance roles), so that S3 and Kinesis see
/// the same identity. Cached until five minutes before they expire.
#[derive(Debug, Default)]
struct SdkCredentials {
    provider:
        tokio::sync::OnceCell<Option<aws_credential_types::provider::SharedCredentialsProvider>>,
    cached: std::sync::Mutex<Option<(Arc<AwsCredential>, Option<std::time::SystemTime>)>>,
}

/// Credentials this close to expiry are refreshed.
const CREDENTIAL_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);

#[async_trait::async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        if let Some((c, expiry)) = self.cached.lock().expect("not poisoned").as_ref() {
            let fresh = expiry.is_none_or(|e| {
                e.duration_since(std::time::SystemTime::now())
                    .is_ok_and(|left| left > CREDENTIAL_REFRESH)
            });
            if fresh {
                return Ok(c.clone());
            }
        }
        let provider = self
            .provider
            .get_or_init(|| async { crate::aws::config().await.credentials_provider() })
            .await;
        let err = |msg: String| object_store::Error::Generic {
            store: "S3",
            source: msg.into(),
        };
        let provider = provider
            .as_ref()
            .ok_or_else(|| err("no AWS credentials provider is configured".into()))?;
        use aws_credential_types::provider::ProvideCredentials;
        let c = provider
            .provide_credentials()
            .await
            .map_err(|e| err(format!("loading AWS credentials: {e}")))?;
        let cred = Arc::new(AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        });
        *self.cached.lock().expect("not poisoned") = Some((cred.clone(), c.expiry()));
        Ok(cred)
    }
}

/// The first `bytes` bytes of the SHA-256 of `data`, in hex: the content-derived part of object
/// names (data files, error files, manifests) and of shortened names.
pub fn short_hash(data: &[u8], bytes: usize) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)[..bytes]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An object store and the prefix inside it that a URL names.
#[derive(Clone)]
pub struct Location {
    /// The store: a local file system rooted at the folder, or an S3 client for the bucket.
    pub store: Arc<dyn ObjectStore>,
    /// The key prefix inside the store (empty for a local folder, which is the store's root).
    pub prefix: Path,
    /// The URL as given, without a trailing slash, for messages.
    pub url: String,
    /// An S3 location (objects above the multipart threshold are created through a staged copy).
    pub s3: bool,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location").field("url", &self.url).finish()
    }
}

/// What a location given by a user names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Url<'a> {
    /// `s3://bucket/key-or-prefix`.
    S3 {
        /// The bucket name.
        bucket: &'a str,
        /// Everything after the bucket's slash, as given (empty for a whole bucket).
        key: &'a str,
    },
    /// A local path (from a plain path or a `file://` URL).
    Local(&'a str),
}

const EXPECTED: &str = "expected a local path, file:///path or s3://bucket/prefix";

/// Classifies a location: an S3 URL, a `file://` URL or a plain path. Anything that looks like a
/// URL but is none of these (an unknown scheme such as `gs://`, or `s3:/bucket` with one slash)
/// is an error, never a local folder named after it. A relative path whose first part contains a
/// colon (`lake:2024/x`) reads as a URL: write it `./lake:2024/x`.
pub fn parse_url(url: &str) -> Result<Url<'_>, StoreError> {
    let bad = |problem: String| StoreError::BadUrl {
        url: url.to_string(),
        problem,
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("an S3 URL needs a bucket: s3://bucket/prefix".into()));
        }
        return Ok(Url::S3 { bucket, key });
    }
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Url::Local(path));
    }
    // A scheme: a letter, then letters, digits, `+`, `-` or `.`, then `:` before any `/`.
    let scheme = url.split_once(':').map(|(s, _)| s).filter(|s| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    match scheme.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(Url::Local(url)),
        Some("s3") | Some("s3a") | Some("s3n") => Err(bad(format!(
            "not an S3 URL: write s3://bucket/prefix (two slashes, scheme s3); {EXPECTED}"
        ))),
        Some("file") => Err(bad(format!(
            "not a file URL: write file:///absolute/path; {EXPECTED}"
        ))),
        Some(other) => Err(bad(format!("unsupported scheme `{other}:`; {EXPECTED}"))),
    }
}

/// Opens a local folder (created if missing) or an S3 prefix.
pub fn open(url: &str, s3: &S3Options) -> Result<Location, StoreError> {
    let trimmed = url.trim_end_matches('/');
    if let Url::S3 {
        bucket,
        key: prefix,
    } = parse_url(url)?
    {
        // Copies "if not exists" complete a multipart upload with `If-None-Match: *`: how objects
        // above the multipart threshold are created only if absent (`put_new`).
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            // No static keys: take the SDK's full chain (profiles, SSO...) rather than
            // object_store's shorter one.
            b = b.with_credentials(Arc::new(SdkCredentials::default()));
        }
        if let Some(r) = &s3.region {
            b = b.with_region(r);
        }
        if let Some(e) = &s3.endpoint {
            // The configured endpoint wins over AWS_ENDPOINT_URL_S3 (which object_store prefers
            // to `with_endpoint`).
            b = b
                .with_endpoint(e)
                .with_config(AmazonS3ConfigKey::S3Endpoint, e);
        }
        let mut client = ClientOptions::new()
            .with_timeout(s3.retry.request_timeout)
            .with_connect_timeout(s3.retry.connect_timeout);
        // The client options replace the ones `from_env` read, so AWS_ALLOW_HTTP is read again.
        let env_http =
            std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        if s3.allow_http || env_http {
            client = client.with_allow_http(true);
        }
        b = b.with_client_options(client).with_retry(RetryConfig {
            max_retries: s3.retry.max_retries,
            retry_timeout: s3.retry.retry_timeout,
            ..RetryConfig::default()
        });
        match s3.sse {
            Sse::None => {}
            Sse::Aes256 => {
                let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                    .parse()
                    .expect("object_store knows this key");
                b = b.with_config(key, "AES256")
            }
            Sse::Kms => {
                b = b.with_sse_kms_encryption(s3.kms_key_id.clone().unwrap_or_default());
                if s3.bucket_key {
                    b = b.with_bucket_key(true);
                }
            }
        }
        let store = b.build().map_err(|source| StoreError::Open {
            url: url.into(),
            source,
        })?;
        return Ok(Location {
            store: Arc::new(store),
            prefix: Path::from(prefix.trim_matches('/')),
            url: trimmed.into(),
            s3: true,
        });
    }
    let Url::Local(path) = parse_url(url)? else {
        unreachable!("S3 URLs are opened above")
    };
    std::fs::create_dir_all(path).map_err(|source| StoreError::CreateDir {
        path: path.into(),
        source,
    })?;
    let store = LocalFileSystem::new_with_prefix(path).map_err(|source| StoreError::Open {
        url: url.into(),
        source,
    })?;
    Ok(Location {
        store: Arc::new(store),
        prefix: Path::default(),
        url: trimmed.into(),
        s3: false,
    })
}

impl Location {
    /// The full path of a relative object name. Segments are used as they are (partition values
    /// arrive already sanitized, with `%XX` escapes that must not be encoded again); a segment
    /// object_store refuses (`.`, `..`, control characters) is percent-encoded instead.
    pub fn path(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            let part = PathPart::parse(part).unwrap_or_else(|_| PathPart::from(part));
            p = p.join(part);
        }
        p
    }

    /// The URL of a relative object name, for messages.
    pub fn display(&self, rel: &str) -> String {
        format!("{}/{}", self.url, rel)
    }

    /// Writes an object: one PUT when small, a multipart upload when at least
    /// `multipart_threshold` bytes.
    pub async fn put(
        &self,
        rel: &str,
        data: Bytes,
        multipart_threshold: usize,
        part_size: usize,
    ) -> Result<(), StoreError> {
        let path = self.path(rel);
        let err = |source| StoreError::Io {
            op: "writing",
            url: self.display(rel),
            source,
        };
        if data.len() < multipart_threshold {
            self.store
                .put(&path, PutPayload::from(data))
                .await
                .map_err(err)?;
            return Ok(());
        }
        let upload = self.store.put_multipart(&path).await.map_err(err)?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, part_size);
        w.put(data);
        if crate::failpoint::armed("mid-multipart") {
            // Every part uploaded, the upload not completed.
            w.wait_for_capacity(0).await.map_err(err)?;
            crate::failpoint::hit("mid-multipart");
        }
        w.finish().await.map_err(err)?;
        Ok(())
    }

    /// Writes an object only if none exists under its name: `None` when written, else the
    /// existing object's length.
    ///
    /// Small objects (and any object on a local folder or in memory): one conditional PUT
    /// (`If-None-Match: *`). On S3 above the multipart threshold, where a PUT would be too large
    /// to retry cheaply: the bytes go up as a multipart upload to `staging` (a name of this
    /// writer's own, outside every table folder), then a server-side copy creates the object
    /// only if absent (CompleteMultipartUpload with `If-None-Match: *`, object_store's
    /// "copy if not exists" in multipart mode), then the staged object is deleted. So two
    /// writers of one name (a fenced process and its successor) never both create it, and a
    /// crash leaves at most an incomplete upload or a staged object per file being written
    /// (README, "S3": the lifecycle rules that expire both).
    pub async fn put_new(
        &self,
        rel: &str,
        data: Bytes,
        multipart_threshold: usize,
        part_size: usize,
        staging: &str,
    ) -> Result<Option<u64>, StoreError> {
        if self.s3 && data.len() >= multipart_threshold {
            self.put(staging, data, multipart_threshold, part_size)
                .await?;
            let result = self
                .store
                .copy_if_not_exists(&self.path(staging), &self.path(rel))
                .await;
            if let Err(e) = self.store.delete(&self.path(staging)).await {
                tracing::warn!(
                    "could not delete the staged copy {}: {e}",
                    self.display(staging)
                );
            }
            return match result {
                Ok(()) => Ok(None),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => self.size(rel).await.map(Some),
                Err(source) => Err(StoreError::Io {
                    op: "writing",
                    url: self.display(rel),
                    source,
                }),
            };
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(rel), PutPayload::from(data), opts)
            .await
        {
            Ok(_) => Ok(None),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => self.size(rel).await.map(Some),
            Err(source) => Err(StoreError::Io {
                op: "writing",
                url: self.display(rel),
                source,
            }),
        }
    }

    /// An object's length.
    pub async fn size(&self, rel: &str) -> Result<u64, StoreError> {
        self.store
            .head(&self.path(rel))
            .await
            .map(|m| m.size)
            .map_err(|source| StoreError::Io {
                op: "checking",
                url: self.display(rel),
                source,
            })
    }

    /// Reads an object, or `None` if it does not exist.
    pub async fn get_opt(&self, rel: &str) -> Result<Option<Bytes>, StoreError> {
        match self.store.get(&self.path(rel)).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|source| StoreError::Io {
                op: "reading",
                url: self.display(rel),
                source,
            }),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(StoreError::Io {
                op: "reading",
                url: self.display(rel),
                source,
            }),
        }
    }

    /// Reads an object by its full path.
    pub async fn get_path(&self, path: &Path) -> Result<Bytes, StoreError> {
        let err = |source| StoreError::Io {
            op: "reading",
            url: format!("{}/{}", self.url, path),
            source,
        };
        self.store
            .get(path)
            .await
            .map_err(err)?
            .bytes()
            .await
            .map_err(err)
    }

    /// Full paths and sizes of the objects under a relative prefix, sorted.
    pub async fn list(&self, rel: &str) -> Result<Vec<(Path, u64)>, StoreError> {
        let prefix = self.path(rel);
        let mut out: Vec<(Path, u64)> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| (m.location, m.size))
            .try_collect()
            .await
            .map_err(|source| StoreError::Io {
                op: "listing",
                url: self.display(rel),
                source,
            })?;
        out.sort();
        Ok(out)
    }

    /// Reads a byte range of an object.
    pub async fn get_range(
        &self,
        rel: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, StoreError> {
        self.store
            .get_range(&self.path(rel), range)
            .await
            .map_err(|source| StoreError::Io {
                op: "reading",
                url: self.display(rel),
                source,
            })
    }

    /// Deletes an object (absent already is fine).
    pub async fn delete(&self, rel: &str) -> Result<(), StoreError> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StoreError::Io {
                op: "deleting",
                url: self.display(rel),
                source,
            }),
        }
    }

    /// The part of a full path below this location's prefix.
    pub fn relative(&self, path: &Path) -> String {
        match path.prefix_match(&self.prefix) {
            Some(parts) => parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/"),
            None => path.to_string(),
        }
    }
}
