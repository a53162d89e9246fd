//! The ingest core: a RAW object read once, in constant memory, becomes
//! its fingerprint (sha256, size, format detected by content) and its RAW
//! manifest.

use std::io::Read;

use chrono::{DateTime, Utc};
use nadir_contract::layout::{self, ArtifactRef, ManifestKind};
use nadir_contract::messages::RawObject;
use nadir_contract::params::IngestParams;
use nadir_flows::format::{self, Detected, FormatError, SNIFF_LEN};
use nadir_store::HashingReader;
use serde_json::json;
use uuid::Uuid;

use nadir_store::sink::{Product, Written};

/// What reading a RAW object once found.
pub struct Fingerprint {
    pub sha256: String,
    pub size: u64,
    /// The format, or why none was recognised (bad input, not a read error).
    pub detected: Result<Detected, FormatError>,
}

/// Reads `reader` to its end: its hash, its size, and its format from the
/// first [`SNIFF_LEN`] bytes. An error is a failure to read, not bad input.
pub fn fingerprint(reader: impl Read) -> std::io::Result<Fingerprint> {
    let mut reader = HashingReader::new(reader);
    let mut head = Vec::with_capacity(SNIFF_LEN);
    (&mut reader)
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)?;
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok(Fingerprint {
        sha256: reader.sha256(),
        size: reader.bytes_read(),
        detected: format::detect(&head),
    })
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
    sha256: &str,
    size: u64,
    detected: Detected,
    params: &IngestParams,
    seconds: f64,
) -> Product {
    let version = layout::raw_version(object.last_modified, sha256);
    let raw = ArtifactRef {
        bucket: object.bucket.to_string(),
        key: object.key.to_string(),
        version: version.clone(),
        sha256: sha256.to_string(),
        size,
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
            "seconds": seconds,
        }),
        audit_metrics: Some(json!({
            "sha256": sha256,
            "size": size,
            "format": detected.to_string(),
            "raw_version": version,
        })),
        version,
    }
}

/// The RAW object transform reads, from what ingest wrote.
pub fn raw_object(
    object: &Listed<'_>,
    sha256: String,
    size: u64,
    detected: Detected,
    written: &Written,
) -> RawObject {
    RawObject {
        key: object.key.to_string(),
        etag: object.etag.to_string(),
        version: layout::raw_version(object.last_modified, &sha256),
        sha256,
        size,
        format: detected,
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
        let print = fingerprint(csv.as_bytes()).unwrap();
        assert_eq!(print.size, csv.len() as u64);
        assert_eq!(print.detected.unwrap().to_string(), "csv");
    }
}
