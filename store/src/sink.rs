//! Where a stage's artifacts go, and the one way they are written.
//!
//! A stage core returns [`Product`]s: the bytes of its artifacts, what they
//! were made from, their parameters and metrics. [`write`] stores every
//! artifact through an [`ArtifactSink`], then the manifest naming them, and
//! returns the references and the audit row: the same steps for every stage,
//! written once. The workers' sink is S3 ([`S3Sink`]); `nadir analyze`'s is
//! a directory ([`DirSink`]) laid out like the buckets.

use std::future::Future;
use std::path::PathBuf;

use crate::{ObjectStore, StoreError};
use nadir_config::Buckets;
use nadir_contract::audit::AuditRecord;
use nadir_contract::layout::{ArtifactRef, Layer, Manifest, ManifestKind};
use serde_json::Value;
use uuid::Uuid;

/// An artifact's bytes and where they go.
pub struct Artifact {
    pub key: String,
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

impl Artifact {
    pub fn parquet(key: String, bytes: Vec<u8>) -> Self {
        Artifact {
            key,
            bytes,
            content_type: "application/vnd.apache.parquet",
        }
    }

    pub fn json(key: String, bytes: Vec<u8>) -> Self {
        Artifact {
            key,
            bytes,
            content_type: "application/json",
        }
    }
}

/// What a stage made of one item (a RAW object, a partition, a model, a
/// run): its artifacts and everything its manifest and audit row say.
pub struct Product {
    pub kind: ManifestKind,
    pub run_id: Uuid,
    pub version: String,
    /// What the audit row is about: a RAW key, a partition, an algorithm, `run`.
    pub item: String,
    /// The artifacts this one was made from (the manifest's inputs).
    pub inputs: Vec<ArtifactRef>,
    /// The audit row's inputs when they are not the manifest's (transform
    /// records the RAW object only, ingest the object as S3 listed it).
    pub audit_inputs: Option<Value>,
    /// Artifacts to write, in order.
    pub artifacts: Vec<Artifact>,
    /// Artifacts the manifest describes that already exist (the RAW object
    /// a RAW manifest is about).
    pub existing: Vec<ArtifactRef>,
    pub manifest_key: String,
    pub parameters: Value,
    pub metrics: Value,
    /// The audit row's metrics, when they are not the manifest's (ingest's
    /// row carries the fingerprint, its manifest how it was read).
    pub audit_metrics: Option<Value>,
}

/// What [`write`] stored.
#[derive(Debug, Clone)]
pub struct Written {
    /// The artifacts, in the order of [`Product::artifacts`].
    pub artifacts: Vec<ArtifactRef>,
    pub manifest: ArtifactRef,
    pub record: AuditRecord,
}

/// A file [`DirSink`] could not write.
#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {source}")]
pub struct FileError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Stores artifact bytes in a layer.
pub trait ArtifactSink: Sync {
    type Error;

    /// The bucket a layer's references name.
    fn bucket(&self, layer: Layer) -> &str;

    fn put(
        &self,
        layer: Layer,
        artifact: Artifact,
        version: &str,
    ) -> impl Future<Output = Result<ArtifactRef, Self::Error>> + Send;

    /// The reference `bytes` will have once put at `key` (a report names
    /// the scores written beside it).
    fn reference(&self, layer: Layer, key: &str, version: &str, bytes: &[u8]) -> ArtifactRef {
        ArtifactRef::of(self.bucket(layer), key.to_string(), version, bytes)
    }
}

/// Writes a product's artifacts, then its manifest; returns the references
/// and the audit row (outputs: the artifacts, then the manifest).
pub async fn write<S: ArtifactSink>(sink: &S, product: Product) -> Result<Written, S::Error> {
    let layer = product.kind.layer();
    let audit_inputs = product
        .audit_inputs
        .unwrap_or_else(|| serde_json::to_value(&product.inputs).expect("references serialize"));
    let mut artifacts = Vec::with_capacity(product.artifacts.len());
    for artifact in product.artifacts {
        artifacts.push(sink.put(layer, artifact, &product.version).await?);
    }
    let manifest = Manifest::new(
        product.kind,
        product.run_id,
        &product.version,
        product.inputs,
        product
            .existing
            .into_iter()
            .chain(artifacts.iter().cloned())
            .collect(),
        product.parameters.clone(),
        product.metrics.clone(),
    );
    let manifest_ref = sink
        .put(
            layer,
            Artifact::json(product.manifest_key, manifest.to_json()),
            &product.version,
        )
        .await?;
    let outputs: Vec<&ArtifactRef> = artifacts.iter().chain([&manifest_ref]).collect();
    Ok(Written {
        record: AuditRecord {
            item: product.item,
            inputs: audit_inputs,
            outputs: serde_json::to_value(outputs).expect("references serialize"),
            parameters: product.parameters,
            metrics: product.audit_metrics.unwrap_or(product.metrics),
        },
        artifacts,
        manifest: manifest_ref,
    })
}

/// The buckets of an S3 server.
pub struct S3Sink<'a> {
    pub store: &'a ObjectStore,
    pub buckets: &'a Buckets,
}

impl ArtifactSink for S3Sink<'_> {
    type Error = StoreError;

    fn bucket(&self, layer: Layer) -> &str {
        match layer {
            Layer::Raw => &self.buckets.raw,
            Layer::Silver => &self.buckets.silver,
            Layer::Models => &self.buckets.models,
            Layer::Eval => &self.buckets.eval,
        }
    }

    async fn put(
        &self,
        layer: Layer,
        artifact: Artifact,
        version: &str,
    ) -> Result<ArtifactRef, StoreError> {
        self.store
            .put_artifact(
                self.bucket(layer),
                artifact.key,
                version,
                artifact.bytes,
                artifact.content_type,
            )
            .await
    }
}

/// A directory standing for the buckets: `DIR/<layer>/<key>`, the bucket
/// of each reference being the layer's name.
pub struct DirSink {
    pub root: PathBuf,
}

impl ArtifactSink for DirSink {
    type Error = FileError;

    fn bucket(&self, layer: Layer) -> &str {
        layer.name()
    }

    async fn put(
        &self,
        layer: Layer,
        artifact: Artifact,
        version: &str,
    ) -> Result<ArtifactRef, FileError> {
        let path = self.root.join(layer.name()).join(&artifact.key);
        let failed = |source| FileError {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        std::fs::write(&path, &artifact.bytes).map_err(failed)?;
        Ok(ArtifactRef::of(
            layer.name(),
            artifact.key,
            version,
            &artifact.bytes,
        ))
    }
}
