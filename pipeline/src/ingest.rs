//! The ingest core: a RAW object becomes its fingerprint (sha256, size,
//! format detected by content) and its RAW manifest. The object is read
//! once, in constant memory, unless S3 already knows its sha256 (the
//! checksum or metadata `nadir upload` sends): then only its first bytes
//! are read, and transform holds every byte it meters to that sha256.

use std::io::Read;

use chrono::{DateTime, Utc};
use nadir_contract::layout::{self, ArtifactRef, ManifestKind};
use nadir_contract::messages::{RawObject, Sha256Origin};
use nadir_contract::params::IngestParams;
use nadir_flows::format::{self, Detected, FormatError, SNIFF_LEN};
use nadir_store::DigestRead;
use serde_json::json;
use uuid::Uuid;

use nadir_store::sink::{Product, Written};

/// What reading a RAW object once found.
pub struct Fingerprint {
    pub sha256: String,
    pub size: u64,
    /// The format, or why none was recognised (bad input, not a read error).
    pub detected: Result<Detected, FormatError>,
    /// How the sha256 was learnt.
    pub sha256_from: Sha256Origin,
}

/// A fingerprint whose format was recognised.
pub struct Recognised {
    pub sha256: String,
    pub sha256_from: Sha256Origin,
    pub size: u64,
    pub detected: Detected,
}

impl Fingerprint {
    /// The fingerprint of a recognised format, or why it was not.
    pub fn recognised(self) -> Result<Recognised, FormatError> {
        Ok(Recognised {
            detected: self.detected?,
            sha256: self.sha256,
            sha256_from: self.sha256_from,
            size: self.size,
        })
    }
}

/// Reads `reader` to its end: its hash, its size, and its format from the
/// first [`SNIFF_LEN`] bytes. An error is a failure to read, not bad input.
pub fn fingerprint(mut reader: impl DigestRead) -> std::io::Result<Fingerprint> {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    (&mut reader)
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)?;
    let (sha256, size) = reader.finish()?;
    Ok(Fingerprint {
        sha256,
        size,
        detected: format::detect(&head),
        sha256_from: Sha256Origin::Read,
    })
}

/// The fingerprint of an object whose sha256 S3 knows, from its first
/// [`SNIFF_LEN`] bytes (`head`).
pub fn fingerprint_known(head: &[u8], size: u64, known: nadir_store::KnownSha256) -> Fingerprint {
    Fingerprint {
        sha256: known.hex,
        size,
        detected: format::detect(&head[..head.len().min(SNIFF_LEN)]),
        sha256_from: known.source,
    }
}

/// A RAW object as S3 (or a directory) lists it.
pub struct Listed<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub etag: &'a str,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

/// The RAW manifest of a fingerprinted object, as a product (it describes
/// the RAW object itself and writes only the manifest).
pub fn raw_product(
    run_id: Uuid,
    object: &Listed<'_>,
    print: &Recognised,
    params: &IngestParams,
    seconds: f64,
) -> Product {
    let Recognised {
        sha256,
        sha256_from,
        size,
        detected,
    } = print;
    let version = layout::raw_version(object.last_modified, sha256);
    let raw = ArtifactRef {
        bucket: object.bucket.to_string(),
        key: object.key.to_string(),
        version: version.clone(),
        sha256: sha256.to_string(),
        size: *size,
    };
    Product {
        kind: ManifestKind::Raw,
        run_id,
        manifest_key: layout::raw_manifest_key(&version),
        item: object.key.to_string(),
        inputs: Vec::new(),
        audit_inputs: Some(
            json!({ "bucket": object.bucket, "key": object.key, "etag": object.etag, "size": object.size }),
        ),
        artifacts: Vec::new(),
        existing: vec![raw],
        parameters: serde_json::to_value(params).expect("parameters serialize"),
        metrics: json!({
            "format": detected.format.name(),
            "gzip": detected.gzip,
            "etag": object.etag,
            "last_modified": object.last_modified,
            "sha256_from": sha256_from.name(),
            "seconds": seconds,
        }),
        audit_metrics: Some(json!({
            "sha256": sha256,
            "sha256_from": sha256_from.name(),
            "size": size,
            "format": detected.to_string(),
            "raw_version": version,
        })),
        version,
    }
}

/// The RAW object transform reads, from what ingest wrote.
pub fn raw_object(object: &Listed<'_>, print: Recognised, written: &Written) -> RawObject {
    RawObject {
        key: object.key.to_string(),
        etag: object.etag.to_string(),
        version: layout::raw_version(object.last_modified, &print.sha256),
        sha256: print.sha256,
        sha256_from: print.sha256_from,
        size: print.size,
        format: print.detected,
        manifest: written.manifest.clone(),
    }
}

/// The ingest row of a retrain run: no RAW object, the SILVER partitions
/// it passes on.
pub fn retrain_record(
    partitions: &[nadir_contract::messages::SilverPartition],
    requested_by: &str,
) -> nadir_contract::audit::AuditRecord {
    nadir_contract::audit::AuditRecord {
        item: "retrain".into(),
        inputs: serde_json::to_value(partitions).expect("partitions serialize"),
        outputs: json!([]),
        parameters: json!({
            "requested_by": requested_by,
            "mode": nadir_contract::messages::RunMode::Retrain,
        }),
        metrics: json!({ "partitions": partitions.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_whose_header_runs_past_the_sniff_window_is_fingerprinted_as_csv() {
        let header: Vec<String> = (0..100_000).map(|i| format!("column_{i}")).collect();
        let csv = format!("{}\n{}\n", header.join(","), vec!["1"; 100_000].join(","));
        assert!(csv.len() > 10 * SNIFF_LEN);
        let print = fingerprint(nadir_store::HashingReader::new(csv.as_bytes())).unwrap();
        assert_eq!(print.size, csv.len() as u64);
        assert_eq!(print.detected.unwrap().to_string(), "csv");
    }
}
