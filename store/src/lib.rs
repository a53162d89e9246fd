//! The S3 object store: MinIO in production, any S3-compatible server in
//! development. Path-style addressing, static credentials from the
//! configuration, an https endpoint checked against the system's roots or
//! `NADIR_S3_CA_FILE`, and errors that name the bucket and key.
//!
//! - [`sink`]: where a stage's artifacts go (S3 for the workers, a
//!   directory for `nadir analyze`), and the one way a product and its
//!   manifest are written.
//! - [`transfer`]: captures of gigabytes in and out: a file hashed once and
//!   uploaded in parts side by side, an object read as ranged GETs side by
//!   side.

pub mod sink;
pub mod transfer;

pub use transfer::{KnownSha256, RangeReader, Ranged, Upload, Uploaded};

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedHttpClient,
};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::ConnectorBuilder;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use bytes::Bytes;
use chrono::{DateTime, Utc};

use nadir_config::S3Settings;
use nadir_contract::layout::{ArtifactRef, Manifest};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("s3://{bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    #[error("S3 {op} s3://{bucket}/{key} failed: {message}")]
    Failed {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    #[error("{uri} does not match the sha256 the audit trail recorded")]
    Tampered { uri: String },
    #[error("s3://{bucket}/{key} changed while it was read: {why}")]
    Changed {
        bucket: String,
        key: String,
        why: String,
    },
}

/// What a HEAD or a listing tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub etag: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

#[derive(Clone)]
pub struct ObjectStore {
    client: aws_sdk_s3::Client,
}

/// A failed S3 call on `bucket/key`, from the SDK's error with its causes.
fn failed<E: std::error::Error + 'static>(
    op: &'static str,
    bucket: &str,
    key: &str,
    err: E,
) -> StoreError {
    failed_because(op, bucket, key, DisplayErrorContext(err))
}

/// A failed S3 call on `bucket/key`, for `why`.
fn failed_because(
    op: &'static str,
    bucket: &str,
    key: &str,
    why: impl std::fmt::Display,
) -> StoreError {
    StoreError::Failed {
        op,
        bucket: bucket.to_string(),
        key: key.to_string(),
        message: why.to_string(),
    }
}

/// The HTTP(S) client S3 is reached with: what the SDK's default client
/// does (rustls, proxies from the environment), with ring as rustls's
/// crypto, trusting the system's CAs or, when `NADIR_S3_CA_FILE` is set,
/// only the CAs in it (`ca_pem`, read and checked by the configuration).
fn https_client(ca_pem: Option<&[u8]>) -> SharedHttpClient {
    let trust = match ca_pem {
        Some(pem) => TrustStore::empty().with_pem_certificate(pem.to_vec()),
        None => TrustStore::default(),
    };
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a TLS context with a trust store always builds");
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

fn to_utc(t: Option<&aws_sdk_s3::primitives::DateTime>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or_default()
}

fn clean_etag(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_string()
}

impl ObjectStore {
    pub fn new(settings: &S3Settings) -> Self {
        let credentials = Credentials::new(
            settings.access_key.clone(),
            settings.secret_key.clone(),
            None,
            None,
            "nadir-config",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(settings.endpoint.clone())
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(true)
            // Plain checksums only: not every S3-compatible server reads the
            // aws-chunked trailers the SDK sends by default.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .http_client(https_client(
                settings.ca_file.as_ref().map(|ca| ca.pem.as_slice()),
            ));
        let config = config.build();
        ObjectStore {
            client: aws_sdk_s3::Client::from_conf(config),
        }
    }

    /// Creates the bucket unless it exists.
    pub async fn ensure_bucket(&self, bucket: &str) -> Result<bool, StoreError> {
        if self
            .client
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(false);
        }
        match self.client.create_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if e.err().is_bucket_already_owned_by_you()
                    || e.err().is_bucket_already_exists() =>
            {
                Ok(false)
            }
            Err(e) => Err(failed("CreateBucket", bucket, "", e)),
        }
    }

    /// Reachability check for `/readyz`.
    pub async fn check_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed("HeadBucket", bucket, "", e))
    }

    /// Stores `bytes`; returns the object's ETag.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<String, StoreError> {
        self.put_with_metadata(bucket, key, bytes, content_type, &[])
            .await
    }

    /// Stores `bytes` with user metadata (`x-amz-meta-<name>`); returns
    /// the object's ETag.
    pub async fn put_with_metadata(
        &self,
        bucket: &str,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        metadata: &[(&str, &str)],
    ) -> Result<String, StoreError> {
        let mut put = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type);
        for (name, value) in metadata {
            put = put.metadata(*name, *value);
        }
        let out = put
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| failed("PutObject", bucket, key, e))?;
        Ok(clean_etag(out.e_tag()))
    }

    /// Stores an artifact; returns its reference (key, version, sha256, size).
    pub async fn put_artifact(
        &self,
        bucket: &str,
        key: String,
        version: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<ArtifactRef, StoreError> {
        let artifact = ArtifactRef::of(bucket, key, version, &bytes);
        self.put(bucket, &artifact.key, bytes.into(), content_type)
            .await?;
        Ok(artifact)
    }

    /// PUTs a manifest under `key`, versioned as the manifest says.
    pub async fn put_manifest(
        &self,
        bucket: &str,
        key: String,
        manifest: &Manifest,
    ) -> Result<ArtifactRef, StoreError> {
        self.put_artifact(
            bucket,
            key,
            &manifest.version,
            manifest.to_json(),
            "application/json",
        )
        .await
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StoreError> {
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(out),
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => {
                Err(StoreError::NotFound {
                    bucket: bucket.into(),
                    key: key.into(),
                })
            }
            Err(e) => Err(failed("GetObject", bucket, key, e)),
        }
    }

    /// Deletes an object; deleting one that does not exist succeeds.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| failed("DeleteObject", bucket, key, e))?;
        Ok(())
    }

    /// The whole object, in memory.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, StoreError> {
        let out = self.get_object(bucket, key).await?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| failed("GetObject", bucket, key, e))?;
        Ok(body.into_bytes())
    }

    /// An artifact, in memory, checked against the sha256 its reference
    /// recorded.
    pub async fn get_artifact(&self, artifact: &ArtifactRef) -> Result<Bytes, StoreError> {
        let bytes = self.get(&artifact.bucket, &artifact.key).await?;
        if nadir_contract::layout::sha256_hex(&bytes) != artifact.sha256 {
            return Err(StoreError::Tampered {
                uri: artifact.uri(),
            });
        }
        Ok(bytes)
    }

    /// Opens an object for reading as a stream, for objects too large to hold
    /// in memory. Wrap it in [`HashingReader`] to check it against a sha256.
    pub async fn open(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<impl tokio::io::AsyncRead + Send + Unpin + 'static, StoreError> {
        let out = self.get_object(bucket, key).await?;
        Ok(Box::pin(out.body.into_async_read()))
    }

    pub async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, StoreError> {
        Ok(self.head_with_sha256(bucket, key).await?.0)
    }

    /// Every object under `prefix`, in key order.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut objects = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed("ListObjectsV2", bucket, prefix, e))?;
            for o in page.contents() {
                objects.push(ObjectInfo {
                    key: o.key().unwrap_or_default().to_string(),
                    etag: clean_etag(o.e_tag()),
                    size: o.size().unwrap_or_default().max(0) as u64,
                    last_modified: to_utc(o.last_modified()),
                });
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// [`list`](Self::list), with a HEAD for every object whose listing
    /// entry has no ETag (some S3-compatible servers omit it; object
    /// identity needs it).
    pub async fn list_with_etags(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut objects = self.list(bucket, prefix).await?;
        for object in objects.iter_mut().filter(|o| o.etag.is_empty()) {
            match self.head(bucket, &object.key).await {
                Ok(info) => *object = info,
                // Deleted since the listing: nothing to identify.
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        objects.retain(|o| !o.etag.is_empty());
        Ok(objects)
    }
}

/// A blocking reader over an object stream that hashes what passes through
/// it: a stage can parse an object of any size in one pass and still check
/// it against the sha256 that ingest recorded.
pub struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: sha2::Digest::new(),
            bytes: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// The sha256 (hex) of everything read so far.
    pub fn sha256(&self) -> String {
        hex::encode(sha2::Digest::finalize(self.hasher.clone()))
    }
}

/// A reader that hashes what it delivers: [`finish`](Self::finish) reads
/// what is left and returns the sha256 (hex) and size of everything.
pub trait DigestRead: std::io::Read {
    fn finish(self) -> std::io::Result<(String, u64)>;
}

impl<R: std::io::Read> DigestRead for HashingReader<R> {
    fn finish(mut self) -> std::io::Result<(String, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((self.sha256(), self.bytes))
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A blocking reader over an async one, for use on a blocking thread
/// (create it on the runtime, then move it to `spawn_blocking`), that
/// remembers whether the transport failed.
///
/// A parser reading an object whose connection dropped sees only a short
/// or failed read and may call the object corrupt; [`StreamFault`] lets the
/// stage tell a failed read (transient: retry) from bad content.
pub fn blocking_reader<R: tokio::io::AsyncRead + Unpin>(
    reader: R,
) -> (Watched<tokio_util::io::SyncIoBridge<R>>, StreamFault) {
    let fault = StreamFault::default();
    (
        Watched {
            inner: tokio_util::io::SyncIoBridge::new(reader),
            fault: fault.clone(),
        },
        fault,
    )
}

/// The first read error of a [`Watched`] stream, if any.
#[derive(Debug, Clone, Default)]
pub struct StreamFault(std::sync::Arc<std::sync::OnceLock<String>>);

impl StreamFault {
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// A reader whose read errors are recorded in its [`StreamFault`].
pub struct Watched<R> {
    inner: R,
    fault: StreamFault,
}

impl<R: std::io::Read> std::io::Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != std::io::ErrorKind::Interrupted {
                let _ = self.fault.0.set(e.to_string());
            }
        })
    }
}
