//! Where every artifact lives, what a version is, and what a manifest says.
//!
//! Keys are built here and nowhere else, so the bucket layout in the README
//! is this file read aloud:
//!
//! | bucket   | key                                           | what                         |
//! |----------|-----------------------------------------------|------------------------------|
//! | `raw`    | whatever the user chose                       | the dropped file, untouched  |
//! | `silver` | `raw/<raw version>/manifest.json`             | RAW manifest written by ingest |
//! | `silver` | `flows/<raw version>/<version>/flows.parquet` | one SILVER partition         |
//! | `silver` | `flows/<raw version>/<version>/manifest.json` | its manifest                 |
//! | `models` | `<algorithm>/<version>/model.json`            | a fitted model               |
//! | `models` | `<algorithm>/<version>/manifest.json`         | its manifest                 |
//! | `eval`   | `<version>/report.json`, `scores.parquet`, `findings.parquet` | a run's evaluation |
//! | `eval`   | `<version>/manifest.json`                     | its manifest                 |

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The code version written into every manifest.
pub const CODE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// An immutable artifact: where it is and what its bytes hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub bucket: String,
    pub key: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
}

impl ArtifactRef {
    /// Describes `bytes` stored at `bucket/key`.
    pub fn of(bucket: &str, key: String, version: &str, bytes: &[u8]) -> Self {
        ArtifactRef {
            bucket: bucket.to_string(),
            key,
            version: version.to_string(),
            sha256: sha256_hex(bytes),
            size: bytes.len() as u64,
        }
    }

    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The feature set of flows: the head of the sha256 of their feature names
/// in order. Models are comparable only within one feature set.
pub fn feature_set(features: &[String]) -> String {
    sha256_hex(features.join("\n").as_bytes())[..16].to_string()
}

/// A version: `20261123T235959Z` plus eight hex digits of a hash of what the
/// version is of, so two versions made in the same second never collide.
pub fn version(at: DateTime<Utc>, of: &str) -> String {
    let digest = Sha256::digest(of.as_bytes());
    format!(
        "{}-{}",
        at.format("%Y%m%dT%H%M%SZ"),
        hex::encode(&digest[..4])
    )
}

/// The input version of a job that reads several versioned artifacts: their
/// versions joined, or a hash of them when that gets long.
pub fn input_version<'a>(versions: impl Iterator<Item = &'a str>) -> String {
    let mut versions: Vec<&str> = versions.collect();
    versions.sort_unstable();
    let joined = versions.join("+");
    if joined.len() <= 120 {
        joined
    } else {
        format!("sha256:{}", &sha256_hex(joined.as_bytes())[..32])
    }
}

/// The version of a RAW object: its last-modified time and its content hash.
pub fn raw_version(last_modified: DateTime<Utc>, sha256: &str) -> String {
    format!(
        "{}-{}",
        last_modified.format("%Y%m%dT%H%M%SZ"),
        &sha256[..8]
    )
}

pub fn raw_manifest_key(raw_version: &str) -> String {
    format!("raw/{raw_version}/manifest.json")
}

pub fn silver_flows_key(raw_version: &str, version: &str) -> String {
    format!("flows/{raw_version}/{version}/flows.parquet")
}

pub fn silver_manifest_key(raw_version: &str, version: &str) -> String {
    format!("flows/{raw_version}/{version}/manifest.json")
}

pub fn model_key(algorithm: &str, version: &str) -> String {
    format!("{algorithm}/{version}/model.json")
}

pub fn model_manifest_key(algorithm: &str, version: &str) -> String {
    format!("{algorithm}/{version}/manifest.json")
}

pub fn eval_report_key(version: &str) -> String {
    format!("{version}/report.json")
}

pub fn eval_scores_key(version: &str) -> String {
    format!("{version}/scores.parquet")
}

pub fn eval_findings_key(version: &str) -> String {
    format!("{version}/findings.parquet")
}

pub fn eval_manifest_key(version: &str) -> String {
    format!("{version}/manifest.json")
}

/// The four layers of DESIGN.md, one bucket each (names configurable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Raw,
    Silver,
    Models,
    Eval,
}

impl Layer {
    /// The default bucket name, and the folder `nadir analyze` writes.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Raw => "raw",
            Layer::Silver => "silver",
            Layer::Models => "models",
            Layer::Eval => "eval",
        }
    }
}

/// What a manifest describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestKind {
    /// A RAW object, as ingest fingerprinted it.
    Raw,
    /// A SILVER partition.
    Silver,
    /// A fitted model.
    Model,
    /// A run's evaluation.
    Eval,
}

impl ManifestKind {
    /// The layer a manifest of this kind is stored in (a RAW object's
    /// manifest goes to SILVER: `raw` is never written to).
    pub fn layer(self) -> Layer {
        match self {
            ManifestKind::Raw | ManifestKind::Silver => Layer::Silver,
            ManifestKind::Model => Layer::Models,
            ManifestKind::Eval => Layer::Eval,
        }
    }
}

/// The manifest beside every artifact: lineage is a walk over these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub kind: ManifestKind,
    pub run_id: uuid::Uuid,
    pub version: String,
    pub created_at: DateTime<Utc>,
    pub code_version: String,
    /// The artifacts this one was made from.
    pub inputs: Vec<ArtifactRef>,
    /// The artifacts this manifest describes.
    pub outputs: Vec<ArtifactRef>,
    /// Parameters and seeds that, with the inputs, reproduce the outputs.
    pub parameters: serde_json::Value,
    /// Row counts, timings and whatever the stage measured.
    pub metrics: serde_json::Value,
}

impl Manifest {
    /// A manifest made now by this build.
    pub fn new(
        kind: ManifestKind,
        run_id: uuid::Uuid,
        version: &str,
        inputs: Vec<ArtifactRef>,
        outputs: Vec<ArtifactRef>,
        parameters: serde_json::Value,
        metrics: serde_json::Value,
    ) -> Self {
        Manifest {
            kind,
            run_id,
            version: version.into(),
            created_at: Utc::now(),
            code_version: CODE_VERSION.into(),
            inputs,
            outputs,
            parameters,
            metrics,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifests always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn versions_are_timestamps_with_a_short_hash() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 23, 59, 59).unwrap();
        let a = version(at, "run-1/transform");
        let b = version(at, "run-2/transform");
        assert!(a.starts_with("20261123T235959Z-"), "{a}");
        assert_eq!(a.len(), "20261123T235959Z-".len() + 8);
        assert_ne!(a, b, "same second, different inputs");
        assert_eq!(a, version(at, "run-1/transform"));
        assert_eq!(
            raw_version(at, &"ab".repeat(32)),
            "20261123T235959Z-abababab"
        );
    }

    #[test]
    fn artifact_refs_hash_their_bytes() {
        let r = ArtifactRef::of("eval", eval_report_key("v1"), "v1", b"abc");
        assert_eq!(
            r.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(r.size, 3);
        assert_eq!(r.uri(), "s3://eval/v1/report.json");
    }
}
