//! Large objects in and out of S3 at the speed of the stages that use them.
//!
//! A capture is gigabytes: one GET stream is bound by the server's stream
//! (one connection, small frames), and one PUT by one connection. So:
//!
//! - [`ObjectStore::put_file`] hashes a local file once, then stores it
//!   with one PUT carrying its `x-amz-checksum-sha256` (the server checks
//!   it) or, above [`Upload::multipart_above`], as a multipart upload whose
//!   parts go up side by side. Either way the object's metadata names its
//!   sha256 ([`SHA256_METADATA`]), so ingest need not read it to know it.
//! - [`ObjectStore::read_ranges`] reads an object as ranged GETs in flight
//!   side by side, handed over in order to a blocking [`Read`]er, each
//!   range checked against the ETag the reading started from: an object
//!   replaced mid-read is a failed read, never a mixture of two.
//!
//! A sha256 learnt from S3 is the uploader's word for what it sent;
//! transform hashes every byte it meters and holds them to it.

use std::io::Read;
use std::path::Path;
use std::sync::mpsc as std_mpsc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use nadir_contract::messages::Sha256Origin;

use crate::{ObjectInfo, ObjectStore, StoreError, clean_etag, failed, failed_because, to_utc};

/// The user-metadata key (`x-amz-meta-sha256`) under which `nadir upload`
/// stores the hex sha256 of the whole object.
pub const SHA256_METADATA: &str = "sha256";

/// A sha256 (hex) S3 told about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownSha256 {
    pub hex: String,
    pub source: Sha256Origin,
}

/// How [`ObjectStore::put_file`] stores a file.
#[derive(Debug, Clone, Copy)]
pub struct Upload {
    /// Files larger than this go up as a multipart upload.
    pub multipart_above: u64,
    /// The size of a part (S3 wants at least 5 MiB, at most 10 000 parts;
    /// a larger part is taken when the file needs it).
    pub part_size: u64,
    /// Parts uploaded side by side.
    pub parts_in_flight: usize,
}

impl Default for Upload {
    fn default() -> Self {
        Upload {
            multipart_above: 64 << 20,
            part_size: 32 << 20,
            parts_in_flight: 4,
        }
    }
}

/// What [`ObjectStore::put_file`] stored.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub etag: String,
    pub size: u64,
    pub sha256: String,
    /// The number of parts (1 for a single PUT).
    pub parts: usize,
}

/// How [`ObjectStore::read_ranges`] reads an object.
#[derive(Debug, Clone, Copy)]
pub struct Ranged {
    /// The bytes of one ranged GET.
    pub chunk: u64,
    /// Ranged GETs in flight side by side (memory: `chunk × in_flight`,
    /// plus one chunk being read).
    pub in_flight: usize,
}

impl Default for Ranged {
    fn default() -> Self {
        Ranged {
            chunk: 8 << 20,
            in_flight: 6,
        }
    }
}

const MAX_PARTS: u64 = 10_000;
const MIN_PART: u64 = 5 << 20;

/// The sha256 (hex) and size of a local file, read once.
fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(sha2::Digest::finalize(hasher)), size))
}

/// The sha256 (hex) and size of a local file, read once, with its bytes
/// when it is at most `keep_up_to` bytes long (a single PUT sends them).
fn read_for_upload(
    path: &Path,
    keep_up_to: u64,
) -> std::io::Result<(String, u64, Option<Vec<u8>>)> {
    if std::fs::metadata(path)?.len() <= keep_up_to {
        let bytes = std::fs::read(path)?;
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        return Ok((sha256, bytes.len() as u64, Some(bytes)));
    }
    let (sha256, size) = hash_file(path)?;
    Ok((sha256, size, None))
}

fn read_at(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

async fn blocking<T: Send + 'static>(
    op: &'static str,
    bucket: &str,
    key: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| failed_because(op, bucket, key, e))?
        .map_err(|e| failed_because(op, bucket, key, e))
}

/// The parts of a `size`-byte file: `(number, offset, length)`.
fn parts(size: u64, part_size: u64) -> Vec<(i32, u64, u64)> {
    let part = part_size.max(MIN_PART).max(size.div_ceil(MAX_PARTS));
    (0..size.div_ceil(part).max(1))
        .map(|i| {
            let offset = i * part;
            (i as i32 + 1, offset, part.min(size - offset))
        })
        .collect()
}

impl ObjectStore {
    /// Stores the local file at `path` as `bucket/key`: hashed once, then
    /// one PUT with its sha256 checksum, or a multipart upload with parts
    /// side by side; the object's metadata names its sha256 either way.
    pub async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        content_type: &str,
        how: Upload,
    ) -> Result<Uploaded, StoreError> {
        let (owned, limit) = (path.to_path_buf(), how.multipart_above);
        let (sha256, size, whole) = blocking("reading the file for", bucket, key, move || {
            read_for_upload(&owned, limit)
        })
        .await?;
        if let Some(bytes) = whole {
            let checksum = aws_smithy_types::base64::encode(
                hex::decode(&sha256).expect("the hex of a sha256 decodes"),
            );
            let out = self
                .client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type(content_type)
                .checksum_sha256(checksum)
                .metadata(SHA256_METADATA, &sha256)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(|e| failed("PutObject", bucket, key, e))?;
            return Ok(Uploaded {
                etag: clean_etag(out.e_tag()),
                size,
                sha256,
                parts: 1,
            });
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .metadata(SHA256_METADATA, &sha256)
            .send()
            .await
            .map_err(|e| failed("CreateMultipartUpload", bucket, key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let plan = parts(size, how.part_size);
        let count = plan.len();
        let uploaded = futures::stream::iter(plan)
            .map(|(number, offset, len)| {
                let (path, upload_id) = (path.to_path_buf(), upload_id.clone());
                async move {
                    let bytes = blocking("reading the file for", bucket, key, move || {
                        read_at(&path, offset, len as usize)
                    })
                    .await?;
                    let out = self
                        .client
                        .upload_part()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .body(ByteStream::from(bytes))
                        .send()
                        .await
                        .map_err(|e| failed("UploadPart", bucket, key, e))?;
                    Ok::<_, StoreError>(
                        CompletedPart::builder()
                            .part_number(number)
                            .e_tag(out.e_tag().unwrap_or_default())
                            .build(),
                    )
                }
            })
            .buffer_unordered(how.parts_in_flight.max(1))
            .try_collect::<Vec<_>>()
            .await;
        let mut completed = match uploaded {
            Ok(completed) => completed,
            Err(e) => {
                // Best effort: an upload left behind holds its parts until
                // the bucket's lifecycle rules clear it.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(e);
            }
        };
        completed.sort_by_key(|p| p.part_number());
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| failed("CompleteMultipartUpload", bucket, key, e))?;
        Ok(Uploaded {
            etag: clean_etag(out.e_tag()),
            size,
            sha256,
            parts: count,
        })
    }

    /// What a HEAD tells about an object, with the sha256 S3 knows of it:
    /// its whole-object sha256 checksum, else the uploader's metadata.
    pub async fn head_with_sha256(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectInfo, Option<KnownSha256>), StoreError> {
        let out = match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(out) => out,
            Err(aws_sdk_s3::error::SdkError::ServiceError(e)) if e.err().is_not_found() => {
                return Err(StoreError::NotFound {
                    bucket: bucket.into(),
                    key: key.into(),
                });
            }
            Err(e) => return Err(failed("HeadObject", bucket, key, e)),
        };
        let info = ObjectInfo {
            key: key.to_string(),
            etag: clean_etag(out.e_tag()),
            size: out.content_length().unwrap_or_default().max(0) as u64,
            last_modified: to_utc(out.last_modified()),
        };
        let checksum = out
            .checksum_sha256()
            // A multipart object's checksum is of its parts' checksums
            // ("…-N"): not the sha256 of its bytes.
            .filter(|c| !c.contains('-'))
            .and_then(|c| aws_smithy_types::base64::decode(c).ok())
            .filter(|d| d.len() == 32)
            .map(|d| KnownSha256 {
                hex: hex::encode(d),
                source: Sha256Origin::S3Checksum,
            });
        let metadata = out
            .metadata()
            .and_then(|m| m.get(SHA256_METADATA))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|hex| KnownSha256 {
                hex,
                source: Sha256Origin::UploaderMetadata,
            });
        Ok((info, checksum.or(metadata)))
    }

    /// The first `len` bytes of the object `etag` names (fewer if it is
    /// shorter).
    pub async fn get_head(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        len: u64,
    ) -> Result<Bytes, StoreError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        fetch_range(self, bucket, key, etag, 0, len).await
    }

    /// Reads the `size`-byte object `bucket/key` whose ETag is `etag` as
    /// ranged GETs side by side. Call on the runtime; read the returned
    /// reader on a blocking thread.
    pub fn read_ranges(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        size: u64,
        how: Ranged,
    ) -> RangeReader {
        let chunk = how.chunk.max(1);
        let in_flight = how.in_flight.max(1);
        let (tx, rx) = tokio::sync::mpsc::channel(in_flight);
        let names = (bucket.to_string(), key.to_string());
        let (store, bucket, key, etag) = (
            self.clone(),
            bucket.to_string(),
            key.to_string(),
            etag.to_string(),
        );
        tokio::spawn(async move {
            let ranges =
                (0..size.div_ceil(chunk)).map(|i| (i * chunk, chunk.min(size - i * chunk)));
            let mut chunks = futures::stream::iter(ranges)
                .map(|(offset, len)| fetch_range(&store, &bucket, &key, &etag, offset, len))
                .buffered(in_flight);
            while let Some(chunk) = chunks.next().await {
                let failed = chunk.is_err();
                // The reader went away: nothing more to fetch.
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        RangeReader {
            bucket: names.0,
            key: names.1,
            chunks: rx,
            current: Bytes::new(),
            delivered: 0,
            size,
            fault: TransferFault::default(),
            hasher: None,
        }
    }
}

/// `len` bytes at `offset` of the object `etag` names, retried twice when
/// the transfer fails (the stage retries longer outages).
async fn fetch_range(
    store: &ObjectStore,
    bucket: &str,
    key: &str,
    etag: &str,
    offset: u64,
    len: u64,
) -> Result<Bytes, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fetch_range_once(store, bucket, key, etag, offset, len).await {
            Err(StoreError::Failed { message, .. }) if attempt < 3 => {
                tracing::debug!(bucket, key, offset, %message, "ranged GET failed; again");
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// `bucket/key` is no longer the object the reading started from.
fn changed(bucket: &str, key: &str, why: impl Into<String>) -> StoreError {
    StoreError::Changed {
        bucket: bucket.into(),
        key: key.into(),
        why: why.into(),
    }
}

async fn fetch_range_once(
    store: &ObjectStore,
    bucket: &str,
    key: &str,
    etag: &str,
    offset: u64,
    len: u64,
) -> Result<Bytes, StoreError> {
    let range = format!("bytes={}-{}", offset, offset + len - 1);
    let out = match store
        .client
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(range)
        .if_match(format!("\"{etag}\""))
        .send()
        .await
    {
        Ok(out) => out,
        Err(aws_sdk_s3::error::SdkError::ServiceError(e)) if e.err().is_no_such_key() => {
            return Err(changed(bucket, key, "it was deleted"));
        }
        Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(412) => {
            return Err(changed(
                bucket,
                key,
                format!("its ETag is no longer {etag}"),
            ));
        }
        Err(e) => return Err(failed("GetObject", bucket, key, e)),
    };
    // Not every S3-compatible server honours If-Match on GET.
    let now = clean_etag(out.e_tag());
    if now != etag {
        return Err(changed(
            bucket,
            key,
            format!("its ETag is {now}, not {etag}"),
        ));
    }
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| failed("GetObject", bucket, key, e))?
        .into_bytes();
    if bytes.len() as u64 > len {
        return Err(failed_because(
            "GetObject",
            bucket,
            key,
            format!("asked for {len} bytes at {offset}, got {}", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// The ordered bytes of [`ObjectStore::read_ranges`] as a blocking reader,
/// optionally hashed on a thread of its own ([`hashed`](Self::hashed)).
pub struct RangeReader {
    bucket: String,
    key: String,
    chunks: tokio::sync::mpsc::Receiver<Result<Bytes, StoreError>>,
    current: Bytes,
    delivered: u64,
    size: u64,
    fault: TransferFault,
    hasher: Option<Hasher>,
}

/// The first failure of a [`RangeReader`]'s transfer, if any.
#[derive(Debug, Clone, Default)]
pub struct TransferFault(std::sync::Arc<std::sync::OnceLock<StoreError>>);

impl TransferFault {
    pub fn get(&self) -> Option<&StoreError> {
        self.0.get()
    }
}

struct Hasher {
    chunks: std_mpsc::SyncSender<Bytes>,
    thread: std::thread::JoinHandle<String>,
}

impl RangeReader {
    /// Hashes every byte delivered, on a thread beside the reader's.
    pub fn hashed(mut self) -> Self {
        let (chunks, received) = std_mpsc::sync_channel::<Bytes>(4);
        let thread = std::thread::spawn(move || {
            let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
            for chunk in received {
                sha2::Digest::update(&mut hasher, &chunk);
            }
            hex::encode(sha2::Digest::finalize(hasher))
        });
        self.hasher = Some(Hasher { chunks, thread });
        self
    }

    /// The first failure of the transfer, if any: a read error the parser
    /// saw is the transfer's fault, not the content's.
    pub fn fault(&self) -> TransferFault {
        self.fault.clone()
    }

    /// Bytes delivered so far.
    pub fn bytes_read(&self) -> u64 {
        self.delivered
    }

    fn next_chunk(&mut self) -> std::io::Result<bool> {
        while self.current.is_empty() {
            if self.delivered == self.size {
                return Ok(false);
            }
            let chunk = match self.chunks.blocking_recv() {
                Some(Ok(chunk)) if !chunk.is_empty() => Ok(chunk),
                Some(Ok(_)) | None => Err(failed_because(
                    "GetObject",
                    &self.bucket,
                    &self.key,
                    format!(
                        "the transfer ended after {} of {} bytes",
                        self.delivered, self.size
                    ),
                )),
                Some(Err(e)) => Err(e),
            };
            match chunk {
                Ok(chunk) => {
                    if let Some(hasher) = &self.hasher {
                        // The hasher only ends when this reader drops it.
                        let _ = hasher.chunks.send(chunk.clone());
                    }
                    self.current = chunk;
                }
                Err(e) => {
                    let message = e.to_string();
                    let _ = self.fault.0.set(e);
                    return Err(std::io::Error::other(message));
                }
            }
        }
        Ok(true)
    }

    /// Reads the rest of the object, without copying it anywhere.
    pub fn drain(&mut self) -> std::io::Result<()> {
        while self.next_chunk()? {
            self.delivered += self.current.len() as u64;
            self.current.clear();
        }
        Ok(())
    }
}

impl crate::DigestRead for RangeReader {
    /// Panics unless [`hashed`](RangeReader::hashed).
    fn finish(mut self) -> std::io::Result<(String, u64)> {
        self.drain()?;
        let hasher = self.hasher.take().expect("finish on a hashed reader");
        drop(hasher.chunks);
        let sha256 = hasher
            .thread
            .join()
            .map_err(|_| std::io::Error::other("the hashing thread panicked"))?;
        Ok((sha256, self.delivered))
    }
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() || !self.next_chunk()? {
            return Ok(0);
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        self.delivered += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_file_once_within_s3s_limits() {
        for (size, part) in [
            (0u64, 32u64 << 20),
            (1, 32 << 20),
            (100 << 20, 32 << 20),
            (96 << 20, 32 << 20),
            (3 << 30, 1),
            (1 << 40, 32 << 20),
        ] {
            let plan = parts(size, part);
            assert!(
                plan.len() as u64 <= MAX_PARTS,
                "{size}: {} parts",
                plan.len()
            );
            let mut next = 0;
            for (i, &(number, offset, len)) in plan.iter().enumerate() {
                assert_eq!(number as usize, i + 1);
                assert_eq!(offset, next);
                if i + 1 < plan.len() {
                    assert!(len >= MIN_PART);
                }
                next += len;
            }
            assert_eq!(next, size);
        }
    }
}
