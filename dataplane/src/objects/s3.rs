//! S3 implementation of [`ObjectStore`], for AWS S3 and S3-compatible servers (MinIO, Garage,
//! Ceph RGW): custom endpoint, path-style addressing, credentials from the configuration or the
//! standard AWS chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, web identity, profile,
//! instance metadata). Objects above the multipart threshold are uploaded in parts, several at
//! once; downloads can be streamed. Errors name the bucket, and a missing bucket or refused
//! credentials each get their own error.

use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use ragplane_config::S3Config;
use std::time::Duration;

use super::{validate_key, ByteStream, ObjectError, ObjectStore, Result};

/// Objects in one S3 bucket, under an optional key prefix.
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    endpoint: String,
    multipart_threshold: usize,
    part_size: usize,
    concurrency: usize,
}

/// An S3 client configured from `cfg`: endpoint, region, addressing style, credentials,
/// timeouts and retries. TLS is rustls with the ring provider, trusting the system's roots, or
/// only the certificates of `objects.ca_file` when it is set (read here, so an unusable file
/// is the error).
pub async fn client(cfg: &S3Config) -> Result<Client> {
    let mut http = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::Ring,
    ));
    if let Some(path) = &cfg.ca_file {
        let pem = crate::tls::read_ca_file(path, "objects.ca_file")?;
        let trust = tls::TrustStore::empty().with_pem_certificate(pem);
        let context = tls::TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| crate::tls::CaFileError::Unusable {
                setting: "objects.ca_file",
                path: path.display().to_string(),
                problem: format!("cannot be used: {e}"),
            })?;
        http = http.tls_context(context);
    }
    let http = http.build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
                .operation_timeout(Duration::from_secs(cfg.operation_timeout_secs))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(cfg.max_attempts));
    if let Some(region) = &cfg.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &cfg.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
        loader = loader.credentials_provider(Credentials::new(
            id.expose(),
            secret.expose(),
            cfg.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "ragplane-config",
        ));
    }
    let shared = loader.load().await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(cfg.path_style)
        // Checksums only where the API requires them: many S3-compatible servers reject the
        // SDK's default trailing checksums. Integrity is kept by the document's SHA-256.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if shared.region().is_none() {
        builder = builder.region(Region::new("us-east-1"));
    }
    Ok(Client::from_conf(builder.build()))
}

impl S3Store {
    /// A store for the configured bucket; nothing is contacted yet. Fails only on an
    /// unusable `objects.ca_file`.
    pub async fn new(cfg: &S3Config) -> Result<Self> {
        let client = client(cfg).await?;
        let endpoint = cfg.endpoint.clone().unwrap_or_else(|| {
            let region = client
                .config()
                .region()
                .map_or_else(|| "us-east-1".to_string(), ToString::to_string);
            format!("AWS S3 ({region})")
        });
        let mut prefix = cfg.prefix.clone();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Self {
            client,
            bucket: cfg.bucket.clone(),
            prefix,
            endpoint,
            multipart_threshold: usize::try_from(cfg.multipart_threshold_bytes)
                .unwrap_or(usize::MAX),
            part_size: usize::try_from(cfg.multipart_part_bytes).unwrap_or(usize::MAX),
            concurrency: cfg.multipart_concurrency.max(1),
        })
    }

    /// A store for the configured bucket, after checking that the bucket exists and the
    /// credentials are accepted.
    pub async fn connect(cfg: &S3Config) -> Result<Self> {
        let store = Self::new(cfg).await?;
        store.ping().await?;
        Ok(store)
    }

    /// Starts reading `key`; the body is read by the caller.
    async fn get_object(
        &self,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput> {
        let full = self.full_key(key)?;
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.error("read", key, e))
    }

    fn full_key(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    /// Any other failure of `action` on `key` in this bucket.
    fn remote(
        &self,
        action: &'static str,
        key: &str,
        message: impl std::fmt::Display,
    ) -> ObjectError {
        ObjectError::Remote {
            action,
            bucket: self.bucket.clone(),
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    /// Turns an SDK error into an error naming the bucket, telling a missing bucket, refused
    /// credentials, a missing object and an unreachable server apart.
    fn error<E>(&self, action: &'static str, key: &str, err: SdkError<E>) -> ObjectError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_string);
        match (code.as_deref(), status) {
            (Some("NoSuchBucket"), _) => ObjectError::BucketNotFound {
                bucket: self.bucket.clone(),
                endpoint: self.endpoint.clone(),
            },
            (Some("NoSuchKey" | "NotFound"), _) | (None, Some(404)) => {
                ObjectError::NotFound(key.to_string())
            }
            (
                Some(
                    c @ ("InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "AccessDenied"
                    | "InvalidToken"
                    | "ExpiredToken"
                    | "InvalidSecurity"),
                ),
                _,
            ) => ObjectError::Credentials {
                bucket: self.bucket.clone(),
                code: c.to_string(),
            },
            // Servers differ in the code of an unknown key (`NotSignedUp` on some), and HEAD
            // responses carry none: any 403 is refused credentials or permissions.
            (c, Some(403)) => ObjectError::Credentials {
                bucket: self.bucket.clone(),
                code: c.unwrap_or("403 Forbidden").to_string(),
            },
            (_, Some(500 | 502 | 503 | 504)) | (Some("SlowDown"), _) => ObjectError::Unavailable {
                action,
                key: key.to_string(),
                message: DisplayErrorContext(&err).to_string(),
            },
            _ if matches!(
                err,
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
            ) =>
            {
                ObjectError::Unavailable {
                    action,
                    key: key.to_string(),
                    message: format!("{} at {}", DisplayErrorContext(&err), self.endpoint),
                }
            }
            _ => self.remote(action, key, DisplayErrorContext(&err)),
        }
    }

    async fn put_multipart(&self, key: &str, full: &str, body: Bytes) -> Result<()> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
            .map_err(|e| self.error("start multipart upload of", key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let parts: Vec<(i32, Bytes)> = (0..body.len())
            .step_by(self.part_size)
            .zip(1..)
            .map(|(start, n)| (n, body.slice(start..body.len().min(start + self.part_size))))
            .collect();
        let uploaded: Result<Vec<CompletedPart>> = futures::stream::iter(parts)
            .map(|(n, chunk)| {
                let upload_id = &upload_id;
                async move {
                    let out = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(full)
                        .upload_id(upload_id)
                        .part_number(n)
                        .body(SdkByteStream::from(chunk))
                        .send()
                        .await
                        .map_err(|e| self.error("upload part of", key, e))?;
                    Ok::<_, ObjectError>(
                        CompletedPart::builder()
                            .part_number(n)
                            .set_e_tag(out.e_tag().map(str::to_string))
                            .build(),
                    )
                }
            })
            .buffered(self.concurrency)
            .try_collect()
            .await;
        let completed = match uploaded {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.error("complete multipart upload of", key, e)),
            Err(e) => Err(e),
        };
        if completed.is_err() {
            // Parts of an abandoned upload are billed until aborted.
            if let Err(e) = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .send()
                .await
            {
                tracing::warn!(key, error = %DisplayErrorContext(&e), "failed to abort multipart upload");
            }
        }
        completed
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        let full = self.full_key(key)?;
        if body.len() > self.multipart_threshold {
            return self.put_multipart(key, &full, body).await;
        }
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .body(SdkByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error("write", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let out = self.get_object(key).await?;
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| self.remote("read", key, e))?;
        Ok(data.into_bytes())
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream> {
        let out = self.get_object(key).await?;
        let (bucket, key) = (self.bucket.clone(), key.to_string());
        Ok(Box::pin(futures::stream::try_unfold(
            out.body,
            move |mut body| {
                let (bucket, key) = (bucket.clone(), key.clone());
                async move {
                    match body.try_next().await {
                        Ok(Some(chunk)) => Ok(Some((chunk, body))),
                        Ok(None) => Ok(None),
                        Err(e) => Err(ObjectError::Remote {
                            action: "read",
                            bucket,
                            key,
                            message: e.to_string(),
                        }),
                    }
                }
            },
        )))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.error("delete", key, e))?;
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let full = format!("{}/", self.full_key(prefix)?);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("list", prefix, e))?;
            let ids = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| self.remote("delete", prefix, e))?;
            if ids.is_empty() {
                continue;
            }
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| self.remote("delete", prefix, e))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.error("delete", prefix, e))?;
            if let Some(failed) = out.errors().first() {
                return Err(self.remote(
                    "delete",
                    failed.key().unwrap_or(prefix),
                    failed.message().unwrap_or("unknown error"),
                ));
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(match self.error("check the bucket of", &self.bucket, e) {
                // HeadBucket has no body, so a 404 says only "not found": the bucket.
                ObjectError::NotFound(_) => ObjectError::BucketNotFound {
                    bucket: self.bucket.clone(),
                    endpoint: self.endpoint.clone(),
                },
                other => other,
            }),
        }
    }
}
