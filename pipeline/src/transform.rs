//! The transform core: RAW objects in, SILVER flow partitions out.
//!
//! Each RAW object of the run becomes one SILVER partition,
//! `silver/flows/<raw version>/<version>/flows.parquet`, with its manifest.
//! The bytes are checked against the sha256 ingest recorded, so a RAW object
//! replaced in between is caught rather than silently mixed in. Packet
//! captures (pcap, pcapng, plain or gzip) go through the flow meter, with
//! the ground truth of a `<key>.labels.csv` sidecar joined as the label when
//! one is in `raw`; Zeek conn.logs (TSV or JSON lines) become the same flow
//! records; flow CSVs are read as they are.

use std::io::Read;

use nadir_contract::format::Format;
use nadir_contract::layout::{self, ArtifactRef, ManifestKind};
use nadir_contract::messages::{RawObject, SilverPartition};
use nadir_contract::params::TransformParams;
use nadir_flowmeter::MeterConfig;
use nadir_flows::FlowTable;
use nadir_flows::capture::{SilverSummary, capture_to_silver, table_from_flows};
use nadir_flows::csv::{TextLimits, check_text};
use nadir_flows::labels::{GroundTruth, SIDECAR_SUFFIX};
use nadir_store::{DigestRead, HashingReader};
use serde_json::json;
use uuid::Uuid;

use nadir_store::sink::{Artifact, Product, Written};

/// What transform made of one RAW object: the SILVER partition's bytes
/// and what is in it.
pub struct Transformed {
    pub parquet: Vec<u8>,
    pub silver: SilverSummary,
    /// Packets read and skipped by reason, flows, labels joined.
    pub metrics: serde_json::Value,
}

impl Transformed {
    fn from_table(table: FlowTable, metrics: serde_json::Value) -> Result<Self, String> {
        Ok(Transformed {
            parquet: table.to_parquet().map_err(|e| e.to_string())?,
            silver: SilverSummary {
                rows: table.rows() as u64,
                features: table.features,
                text: table.text,
                labelled: table.labelled,
            },
            metrics,
        })
    }
}

fn ground_truth(labels: Option<&[u8]>) -> Result<Option<GroundTruth>, String> {
    labels
        .map(|l| {
            GroundTruth::parse(&String::from_utf8_lossy(l))
                .map_err(|e| format!("ground truth: {e}"))
        })
        .transpose()
}

fn check_sha256(object: &RawObject, actual: &str) -> Result<(), String> {
    if actual == object.sha256 {
        Ok(())
    } else {
        Err(format!(
            "the bytes read do not match the sha256 ingest recorded ({}, {}): they hash to {actual}",
            object.sha256,
            object.sha256_from.vouched()
        ))
    }
}

/// How much of an object read whole (a flow CSV, a Zeek log, a Parquet
/// file, a ground-truth sidecar) may be held in memory, how far a gzip
/// object (a streamed capture too) may expand, and how wide a text table
/// may be: hostile input gets a clear error naming the setting, not an OOM
/// kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `NADIR_MAX_TABLE_BYTES`: bytes of a table object, after gunzip.
    pub table_bytes: u64,
    /// `NADIR_MAX_GZIP_RATIO`: how many times its size a gzip object may grow.
    pub gzip_ratio: u64,
    /// `NADIR_MAX_COLUMNS`: columns a CSV header (a Zeek `#fields` line) may name.
    pub columns: usize,
    /// `NADIR_MAX_LINE_BYTES`: bytes of one line of a CSV or Zeek log.
    pub line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let text = TextLimits::default();
        Limits {
            table_bytes: 2 << 30,
            gzip_ratio: 1000,
            columns: text.columns,
            line_bytes: text.line_bytes,
        }
    }
}

impl Limits {
    /// No limit at all: for reading again what was accepted once.
    pub fn unlimited() -> Self {
        Limits {
            table_bytes: u64::MAX,
            gzip_ratio: u64::MAX,
            columns: usize::MAX,
            line_bytes: usize::MAX,
        }
    }

    /// The limits of a text table.
    pub fn text(&self) -> TextLimits {
        TextLimits {
            columns: self.columns,
            line_bytes: self.line_bytes,
        }
    }

    /// Whether an object of `size` bytes may be read whole; the error names
    /// the setting.
    pub fn check_size(&self, size: u64) -> Result<(), String> {
        if size > self.table_bytes {
            return Err(format!(
                "the object is {size} bytes, more than the {} bytes a table object may hold in memory (NADIR_MAX_TABLE_BYTES); raise it to read this object",
                self.table_bytes
            ));
        }
        Ok(())
    }

    /// The end of the error for an object found larger than
    /// `NADIR_MAX_TABLE_BYTES` while it was read.
    fn larger_than_table(&self) -> String {
        format!(
            "larger than the {} bytes a table object may hold in memory (NADIR_MAX_TABLE_BYTES); raise it to read this object",
            self.table_bytes
        )
    }
}

/// Why a ground-truth sidecar could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SidecarError {
    /// Its bytes failed to arrive: the source's fault, worth a retry.
    #[error("reading the ground truth {key}: {reason}")]
    Read { key: String, reason: String },
    /// It is over a limit: bad input.
    #[error("the ground truth {key}: {reason}")]
    Limit { key: String, reason: String },
}

impl SidecarError {
    /// Whether the error is the source's (a read that failed), not the
    /// sidecar's content.
    pub fn is_read(&self) -> bool {
        matches!(self, SidecarError::Read { .. })
    }
}

/// A ground-truth sidecar (named `key` in errors) read from `reader`
/// within the limits of a table object: no more than
/// `NADIR_MAX_TABLE_BYTES` are read (one byte more says it is over), and
/// its header's columns and every line are held to `NADIR_MAX_COLUMNS` and
/// `NADIR_MAX_LINE_BYTES` before it is parsed.
pub fn read_sidecar(key: &str, reader: impl Read, limits: Limits) -> Result<Vec<u8>, SidecarError> {
    let mut labels = Vec::new();
    reader
        .take(limits.table_bytes.saturating_add(1))
        .read_to_end(&mut labels)
        .map_err(|e| SidecarError::Read {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
    let over = |reason: String| SidecarError::Limit {
        key: key.to_string(),
        reason,
    };
    if labels.len() as u64 > limits.table_bytes {
        return Err(over(format!("it is {}", limits.larger_than_table())));
    }
    check_text(&labels, b',', |_| true, limits.text()).map_err(|e| over(e.to_string()))?;
    Ok(labels)
}

/// A flow CSV (plain or gzip) to a flow table. Pure: no I/O.
pub fn transform_csv(
    object: &RawObject,
    bytes: &[u8],
    limits: Limits,
) -> Result<Transformed, String> {
    check_sha256(object, &layout::sha256_hex(bytes))?;
    let table = FlowTable::from_csv_within(&inflate(object, bytes, limits)?, limits.text())
        .map_err(|e| e.to_string())?;
    let metrics = json!({ "rows": table.rows() });
    Transformed::from_table(table, metrics)
}

/// A packet capture, read once from `reader` in constant memory, to a flow
/// table with the ground truth of `labels` joined, with the timeouts of
/// `meter`. The bytes are checked against the sha256 ingest recorded.
pub fn transform_capture<R: DigestRead + Send>(
    object: &RawObject,
    mut reader: R,
    labels: Option<&[u8]>,
    meter: MeterConfig,
) -> Result<Transformed, String> {
    let truth = ground_truth(labels)?;
    let mut parquet = Vec::new();
    let (stats, silver) = capture_to_silver(
        nadir_flowmeter::Source::reader(&mut reader),
        meter,
        truth.as_ref(),
        &mut parquet,
        |_| {},
    )
    .map_err(|e| e.to_string())?;
    // Whatever follows the last record still counts towards the hash.
    let (sha256, bytes) = reader
        .finish()
        .map_err(|e| format!("reading the capture: {e}"))?;
    check_sha256(object, &sha256)?;
    let metrics = json!({
        "bytes": bytes,
        "packets": stats.packets,
        "ip_packets": stats.ip_packets,
        "skipped": stats.skipped,
        "out_of_order": stats.out_of_order,
        "evicted_flows": stats.evicted,
        "clock_resets": stats.clock_resets,
        "flows": silver.rows,
        "ground_truth_rows": truth.as_ref().map(GroundTruth::len),
    });
    Ok(Transformed {
        parquet,
        silver,
        metrics,
    })
}

/// A Zeek conn.log (tab-separated or JSON lines, plain or gzip) to a flow
/// table with the ground truth of `labels` joined. Pure: no I/O.
pub fn transform_zeek(
    object: &RawObject,
    bytes: &[u8],
    labels: Option<&[u8]>,
    limits: Limits,
) -> Result<Transformed, String> {
    check_sha256(object, &layout::sha256_hex(bytes))?;
    let json = object.format.format == Format::JsonLines;
    let inflated = inflate(object, bytes, limits)?;
    // Lines (and a TSV log's `#fields`) held to the limits before parsing.
    check_text(
        &inflated,
        b'\t',
        |line| !json && line.starts_with(b"#fields"),
        limits.text(),
    )
    .map_err(|e| format!("Zeek conn.log: {e}"))?;
    let text = String::from_utf8_lossy(&inflated).into_owned();
    drop(inflated);
    let flows = nadir_flowmeter::zeek::flows_from_conn_log(
        &text,
        json,
        MeterConfig::default().context_window_ns,
    )
    .map_err(|e| format!("Zeek conn.log: {e}"))?;
    let truth = ground_truth(labels)?;
    let table = table_from_flows(&flows, truth.as_ref().map(|t| t.labels(&flows)), 0)
        .map_err(|e| e.to_string())?;
    let metrics = json!({ "records": flows.len(), "ground_truth_rows": truth.as_ref().map(GroundTruth::len) });
    Transformed::from_table(table, metrics)
}

/// Flows already (a `nadir flows` file, a SILVER partition): read as they
/// are, their Float64 columns as features. Pure: no I/O.
pub fn transform_parquet(
    object: &RawObject,
    bytes: &[u8],
    limits: Limits,
) -> Result<Transformed, String> {
    check_sha256(object, &layout::sha256_hex(bytes))?;
    let bytes = inflate(object, bytes, limits)?;
    let frame = nadir_flows::table::read_parquet(&bytes).map_err(|e| e.to_string())?;
    let features: Vec<String> = frame
        .columns()
        .iter()
        .filter(|c| c.dtype() == &polars::prelude::DataType::Float64)
        .map(|c| c.name().to_string())
        .collect();
    if features.is_empty() {
        return Err("the Parquet file has no Float64 feature columns".into());
    }
    let table = FlowTable::from_parquet(&bytes, &features).map_err(|e| e.to_string())?;
    let metrics = json!({ "rows": table.rows() });
    Transformed::from_table(table, metrics)
}

/// Any RAW object held in memory (a capture, a Zeek log, a flow CSV or
/// Parquet file) to SILVER, by the format ingest detected. Pure: no I/O.
/// (The worker streams captures from S3 instead; `nadir analyze` reads
/// local files with this.)
pub fn transform_object(
    object: &RawObject,
    bytes: &[u8],
    labels: Option<&[u8]>,
    meter: MeterConfig,
    limits: Limits,
) -> Result<Transformed, String> {
    let format = object.format.format;
    if format.is_capture() {
        transform_capture(object, HashingReader::new(bytes), labels, meter)
    } else if format.is_zeek() {
        transform_zeek(object, bytes, labels, limits)
    } else if format == Format::Parquet {
        transform_parquet(object, bytes, limits)
    } else {
        transform_csv(object, bytes, limits)
    }
}

/// The flow meter's settings from the configuration (a streamed gzip
/// capture is held to `NADIR_MAX_GZIP_RATIO` like a table object).
pub fn meter_config(analysis: &crate::Analysis) -> MeterConfig {
    MeterConfig {
        max_open_flows: analysis.max_open_flows,
        max_clock_jump_ns: seconds_to_ns(analysis.max_clock_jump.as_secs()),
        max_gzip_ratio: analysis.limits.gzip_ratio,
        ..meter(
            analysis.flow_idle_timeout.as_secs(),
            analysis.flow_active_timeout.as_secs(),
        )
    }
}

/// The flow meter's settings a SILVER partition recorded (its limits
/// where it recorded them, the defaults of the time before); no gzip limit,
/// since the capture was accepted once.
pub fn recorded_meter(params: &TransformParams) -> MeterConfig {
    let defaults = MeterConfig::default();
    MeterConfig {
        max_open_flows: params.max_open_flows.map_or(defaults.max_open_flows, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        }),
        max_clock_jump_ns: params
            .max_clock_jump_s
            .map_or(defaults.max_clock_jump_ns, seconds_to_ns),
        max_gzip_ratio: u64::MAX,
        ..meter(params.flow_idle_timeout_s, params.flow_active_timeout_s)
    }
}

fn seconds_to_ns(seconds: u64) -> i64 {
    seconds.saturating_mul(1_000_000_000).min(i64::MAX as u64) as i64
}

fn meter(idle_s: u64, active_s: u64) -> MeterConfig {
    MeterConfig {
        idle_timeout_ns: seconds_to_ns(idle_s),
        active_timeout_ns: seconds_to_ns(active_s),
        ..MeterConfig::default()
    }
}

/// The key of a RAW object's ground-truth sidecar, when its format can
/// carry one.
pub fn sidecar_key(object: &RawObject) -> Option<String> {
    object
        .format
        .format
        .takes_sidecar()
        .then(|| format!("{}{SIDECAR_SUFFIX}", object.key))
}

/// A sidecar's reference: its bucket and key, its bytes' hash as version.
pub fn sidecar_ref(bucket: &str, key: String, labels: &[u8]) -> ArtifactRef {
    let sha256 = layout::sha256_hex(labels);
    ArtifactRef {
        bucket: bucket.to_string(),
        key,
        version: sha256[..8].to_string(),
        sha256,
        size: labels.len() as u64,
    }
}

/// Whether the object is a packet capture (the worker streams those).
pub fn streams(object: &RawObject) -> bool {
    object.format.format.is_capture()
}

/// The SILVER partition of one RAW object as a product: its flows and
/// their manifest, which names the RAW object, its RAW manifest and the
/// ground truth joined.
pub struct SilverOf<'a> {
    pub run_id: Uuid,
    pub version: &'a str,
    pub object: &'a RawObject,
    /// The RAW object's reference (its bucket is the sink's).
    pub raw: ArtifactRef,
    pub sidecar: Option<ArtifactRef>,
    pub meter: MeterConfig,
    pub seconds: f64,
}

impl SilverOf<'_> {
    pub fn product(&self, transformed: Transformed) -> Product {
        let Transformed {
            parquet,
            silver,
            metrics: read,
        } = transformed;
        let raw_version = &self.object.version;
        let parameters = TransformParams {
            format: self.object.format,
            features: silver.features.clone(),
            text_columns: silver.text.clone(),
            flow_idle_timeout_s: (self.meter.idle_timeout_ns / 1_000_000_000) as u64,
            flow_active_timeout_s: (self.meter.active_timeout_ns / 1_000_000_000) as u64,
            max_open_flows: Some(self.meter.max_open_flows as u64),
            max_clock_jump_s: Some((self.meter.max_clock_jump_ns / 1_000_000_000) as u64),
        };
        Product {
            kind: ManifestKind::Silver,
            run_id: self.run_id,
            version: self.version.to_string(),
            item: raw_version.clone(),
            inputs: [self.raw.clone(), self.object.manifest.clone()]
                .into_iter()
                .chain(self.sidecar.clone())
                .collect(),
            audit_inputs: Some(json!([self.raw])),
            artifacts: vec![Artifact::parquet(
                layout::silver_flows_key(raw_version, self.version),
                parquet,
            )],
            existing: Vec::new(),
            audit_metrics: None,
            manifest_key: layout::silver_manifest_key(raw_version, self.version),
            parameters: serde_json::to_value(parameters).expect("parameters serialize"),
            metrics: json!({
                "rows": silver.rows,
                "features": silver.features.len(),
                "labelled": silver.labelled,
                "read": read,
                "seconds": self.seconds,
            }),
        }
    }
}

/// The partition the next stages read, from what was written.
pub fn partition(
    object: &RawObject,
    features: Vec<String>,
    rows: u64,
    written: &Written,
) -> SilverPartition {
    SilverPartition {
        raw_version: object.version.clone(),
        features,
        flows: written.artifacts[0].clone(),
        manifest: written.manifest.clone(),
        rows,
    }
}

/// The audit row of a partition a retrain run takes from SILVER as it is:
/// the same outputs and features as the transformation that made it, with
/// `reused_by` saying that nothing was transformed (such a row never
/// counts as a new partition of a training window).
pub fn reused(partition: &SilverPartition) -> nadir_contract::audit::AuditRecord {
    nadir_contract::audit::AuditRecord {
        item: partition.raw_version.clone(),
        inputs: json!([]),
        outputs: json!([partition.flows, partition.manifest]),
        parameters: json!({ "features": partition.features, "reused_by": "retrain" }),
        metrics: json!({ "rows": partition.rows }),
    }
}

/// The object's bytes, gunzipped if ingest found them compressed, within
/// `limits`.
fn inflate<'a>(
    object: &RawObject,
    bytes: &'a [u8],
    limits: Limits,
) -> Result<std::borrow::Cow<'a, [u8]>, String> {
    limits.check_size(bytes.len() as u64)?;
    if !object.format.gzip {
        return Ok(bytes.into());
    }
    let by_ratio = (bytes.len() as u64)
        .saturating_mul(limits.gzip_ratio)
        .max(1 << 20);
    let max = limits.table_bytes.min(by_ratio);
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                "the gzip stream is truncated: it ends inside a compressed block".to_string()
            }
            _ => format!("the gzip stream is corrupt: {e}"),
        })?;
    if out.len() as u64 > max {
        return Err(if max == limits.table_bytes {
            format!("gunzipped, the object is {}", limits.larger_than_table())
        } else {
            format!(
                "the {} gzip bytes expand more than {}-fold (NADIR_MAX_GZIP_RATIO): a decompression bomb, or raise the setting",
                bytes.len(),
                limits.gzip_ratio
            )
        });
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(bytes: &[u8], format: &str) -> RawObject {
        let format = format.parse().unwrap();
        RawObject {
            key: "k".into(),
            etag: "e".into(),
            version: "v".into(),
            sha256: layout::sha256_hex(bytes),
            sha256_from: Default::default(),
            size: bytes.len() as u64,
            format,
            manifest: ArtifactRef::of("silver", "m".into(), "v", b""),
        }
    }

    #[test]
    fn a_flows_parquet_file_is_read_as_it_is() {
        let csv = b"duration,fwd_packets,label\n1.5,3,normal\n0.1,90,portscan\n";
        let silver = transform_csv(&raw(csv, "csv"), csv, Limits::default()).unwrap();
        let object = raw(&silver.parquet, "parquet");
        assert_eq!(
            nadir_flows::format::detect(&silver.parquet).unwrap(),
            object.format
        );
        let again = transform_object(
            &object,
            &silver.parquet,
            None,
            MeterConfig::default(),
            Limits::default(),
        )
        .unwrap();
        assert_eq!(again.silver.rows, 2);
        assert_eq!(again.silver.features, silver.silver.features);
        assert!(again.silver.labelled);
        let bad = transform_parquet(&raw(b"PAR1", "parquet"), b"PAR1", Limits::default())
            .err()
            .unwrap();
        assert!(!bad.is_empty());
    }

    #[test]
    fn zeek_conn_logs_become_labelled_flows() {
        let log = "{\"ts\":1767225600.5,\"id.orig_h\":\"10.0.0.1\",\"id.orig_p\":40000,\"id.resp_h\":\"10.0.0.2\",\"id.resp_p\":22,\"proto\":\"tcp\",\"duration\":1.5,\"conn_state\":\"SF\",\"history\":\"ShADadFf\",\"orig_pkts\":9,\"orig_ip_bytes\":900,\"resp_pkts\":7,\"resp_ip_bytes\":1200}\n{\"ts\":1767225601.0,\"id.orig_h\":\"10.0.0.3\",\"id.orig_p\":123,\"id.resp_h\":\"10.0.0.4\",\"id.resp_p\":123,\"proto\":\"udp\",\"orig_pkts\":1,\"orig_ip_bytes\":76,\"resp_pkts\":1,\"resp_ip_bytes\":76}\n";
        let truth = b"protocol,src_ip,src_port,dst_ip,dst_port,label\n6,10.0.0.2,22,10.0.0.1,40000,ssh_bruteforce\n";
        let t = transform_zeek(
            &raw(log.as_bytes(), "json-lines"),
            log.as_bytes(),
            Some(truth),
            Limits::default(),
        )
        .unwrap();
        let t = FlowTable::from_parquet(&t.parquet, &t.silver.features).unwrap();
        assert_eq!(t.rows(), 2);
        assert_eq!(
            t.labels().unwrap(),
            [
                Some("ssh_bruteforce".to_string()),
                Some("normal".to_string())
            ]
        );
        assert!(t.features.contains(&"fwd_packets".to_string()));
        let x = t.feature_matrix().unwrap();
        assert_eq!(
            x[[
                0,
                t.features.iter().position(|f| f == "fwd_packets").unwrap()
            ]],
            9.0
        );
    }

    #[test]
    fn a_changed_object_is_caught_by_its_hash() {
        let object = raw(b"a,b\n1,2\n", "csv");
        let err = transform_csv(&object, b"a,b\n1,3\n", Limits::default())
            .err()
            .unwrap();
        assert!(
            err.contains("do not match the sha256 ingest recorded"),
            "{err}"
        );
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn a_gzip_bomb_is_refused_with_the_setting_named() {
        let bomb = gz(&vec![b'0'; 64 << 20]);
        let object = raw(&bomb, "csv+gzip");
        let error = inflate(&object, &bomb, Limits::default()).unwrap_err();
        assert!(error.contains("NADIR_MAX_GZIP_RATIO"), "{error}");
        let small = Limits {
            table_bytes: 1000,
            gzip_ratio: 1_000_000,
            ..Limits::default()
        };
        let error = inflate(&object, &bomb, small).unwrap_err();
        assert!(error.contains("NADIR_MAX_TABLE_BYTES"), "{error}");
    }

    fn wide_csv(columns: usize) -> Vec<u8> {
        let header: Vec<String> = (0..columns).map(|i| format!("c{i}")).collect();
        let row = vec!["1"; columns].join(",");
        format!("{}\n{row}\n{row}\n", header.join(",")).into_bytes()
    }

    #[test]
    fn a_100_000_column_csv_is_recognised_then_refused_by_the_column_limit() {
        let csv = wide_csv(100_000);
        let detected = nadir_flows::format::detect(&csv).unwrap();
        assert_eq!(detected.to_string(), "csv", "never unrecognised content");
        let error = transform_object(
            &raw(&csv, "csv"),
            &csv,
            None,
            MeterConfig::default(),
            Limits::default(),
        )
        .err()
        .unwrap();
        assert!(
            error.contains("100000 columns") && error.contains("NADIR_MAX_COLUMNS"),
            "{error}"
        );
        // Gzip the same, and within a raised limit it is read.
        let packed = gz(&csv);
        let object = raw(&packed, "csv+gzip");
        let error = transform_csv(&object, &packed, Limits::default())
            .err()
            .unwrap();
        assert!(error.contains("NADIR_MAX_COLUMNS"), "{error}");
        let roomy = Limits {
            columns: 100_000,
            ..Limits::default()
        };
        assert_eq!(
            transform_csv(&object, &packed, roomy).unwrap().silver.rows,
            2
        );
    }

    #[test]
    fn a_line_longer_than_the_limit_is_refused_in_csv_and_zeek_logs() {
        let csv = format!("duration,label\n1,\"{}\"\n", "x".repeat(2000)).into_bytes();
        let short_lines = Limits {
            line_bytes: 1000,
            ..Limits::default()
        };
        let error = transform_csv(&raw(&csv, "csv"), &csv, short_lines)
            .err()
            .unwrap();
        assert!(
            error.contains("line 2 is 2004 bytes long") && error.contains("NADIR_MAX_LINE_BYTES"),
            "{error}"
        );
        let log = format!(
            "{{\"ts\":1767225600.5,\"id.orig_h\":\"10.0.0.1\",\"id.orig_p\":1,\"id.resp_h\":\"10.0.0.2\",\"id.resp_p\":2,\"proto\":\"udp\",\"orig_pkts\":1,\"resp_pkts\":0,\"pad\":\"{}\"}}\n",
            "p".repeat(2000)
        );
        let error = transform_zeek(
            &raw(log.as_bytes(), "json-lines"),
            log.as_bytes(),
            None,
            short_lines,
        )
        .err()
        .unwrap();
        assert!(
            error.starts_with("Zeek conn.log: line 1") && error.contains("NADIR_MAX_LINE_BYTES"),
            "{error}"
        );
        let fields: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
        let tsv = format!("#separator \\x09\n#fields\t{}\n", fields.join("\t"));
        let narrow = Limits {
            columns: 10,
            ..Limits::default()
        };
        let error = transform_zeek(
            &raw(tsv.as_bytes(), "zeek-tsv"),
            tsv.as_bytes(),
            None,
            narrow,
        )
        .err()
        .unwrap();
        assert!(
            error.contains("21 columns") && error.contains("NADIR_MAX_COLUMNS"),
            "{error}"
        );
    }

    /// A classic pcap (raw IPv4) of `n` one-packet UDP flows.
    fn udp_pcap(n: u32) -> Vec<u8> {
        let packets: Vec<(u32, u16)> = (0..n)
            .map(|i| (1_767_225_600 + i / 1000, (i % 50_000) as u16 + 1024))
            .collect();
        nadir_trafficgen::raw::udp_pcap(&packets)
    }

    #[test]
    fn a_streamed_gzip_capture_is_held_to_the_gzip_ratio() {
        let capture = gz(&udp_pcap(100_000));
        let object = raw(&capture, "pcap+gzip");
        let analysis = |ratio: &str| {
            let env: std::collections::HashMap<String, String> =
                [("NADIR_MAX_GZIP_RATIO".to_string(), ratio.to_string())].into();
            crate::Analysis::from(&env).unwrap()
        };
        let error = transform_capture(
            &object,
            HashingReader::new(&capture[..]),
            None,
            meter_config(&analysis("5")),
        )
        .err()
        .unwrap();
        assert!(
            error.contains("NADIR_MAX_GZIP_RATIO") && error.contains("5-fold"),
            "{error}"
        );
        let read = transform_capture(
            &object,
            HashingReader::new(&capture[..]),
            None,
            meter_config(&analysis("1000")),
        )
        .unwrap();
        assert!(read.silver.rows > 0);
    }

    #[test]
    fn a_partition_records_the_meter_limits_it_was_built_under() {
        let env: std::collections::HashMap<String, String> = [
            ("NADIR_MAX_OPEN_FLOWS".to_string(), "500".to_string()),
            ("NADIR_MAX_CLOCK_JUMP_SECS".to_string(), "3600".to_string()),
        ]
        .into();
        let meter = meter_config(&crate::Analysis::from(&env).unwrap());
        let csv = b"duration,label\n1.5,normal\n0.1,portscan\n";
        let object = raw(csv, "csv");
        let silver = SilverOf {
            run_id: Uuid::nil(),
            version: "v1",
            object: &object,
            raw: object.manifest.clone(),
            sidecar: None,
            meter,
            seconds: 0.0,
        };
        let product = silver.product(transform_csv(&object, csv, Limits::default()).unwrap());
        assert_eq!(product.parameters["max_open_flows"], 500);
        assert_eq!(product.parameters["max_clock_jump_s"], 3600);
        let params: TransformParams = serde_json::from_value(product.parameters).unwrap();
        let again = recorded_meter(&params);
        assert_eq!(
            (again.max_open_flows, again.max_clock_jump_ns),
            (500, 3600 * 1_000_000_000)
        );
    }

    /// An endless sidecar: its header, then rows for ever; counts what it
    /// served.
    #[derive(Default)]
    struct Endless {
        served: u64,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            const HEAD: &[u8] = b"protocol,src_ip,src_port,dst_ip,dst_port,label\n";
            const ROW: &[u8] = b"6,10.0.0.1,40000,10.0.0.2,22,ssh_bruteforce\n";
            for b in buf.iter_mut() {
                let at = self.served as usize;
                *b = match HEAD.get(at) {
                    Some(b) => *b,
                    None => ROW[(at - HEAD.len()) % ROW.len()],
                };
                self.served += 1;
            }
            Ok(buf.len())
        }
    }

    const SIDECAR: &str = "s3://raw/a.pcap.labels.csv";

    #[test]
    fn a_sidecar_is_read_no_further_than_the_table_limit() {
        let limits = Limits {
            table_bytes: 100_000,
            ..Limits::default()
        };
        let mut endless = Endless::default();
        let error = read_sidecar(SIDECAR, &mut endless, limits).unwrap_err();
        assert!(!error.is_read(), "{error:?}");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "the ground truth {SIDECAR}: it is larger than the 100000 bytes"
            )) && message.contains("NADIR_MAX_TABLE_BYTES"),
            "{message}"
        );
        assert_eq!(
            endless.served, 100_001,
            "read one byte past the limit, no further"
        );

        // Within the limit the same rows are read and parse.
        let labels = read_sidecar(SIDECAR, Endless::default().take(10_000), limits).unwrap();
        assert_eq!(labels.len(), 10_000);
        let whole = &labels[..labels.iter().rposition(|b| *b == b'\n').unwrap()];
        assert!(
            ground_truth(Some(whole))
                .unwrap()
                .is_some_and(|t| t.len() == 1)
        );
    }

    #[test]
    fn a_sidecar_is_held_to_the_column_and_line_limits() {
        let wide = format!(
            "{},extra\n",
            nadir_flows::labels::HEADER.replace(',', ",x,")
        );
        let narrow = Limits {
            columns: 10,
            ..Limits::default()
        };
        let error = read_sidecar(SIDECAR, wide.as_bytes(), narrow).unwrap_err();
        assert!(!error.is_read(), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "the ground truth {SIDECAR}: the header names 12 columns, more than the 10 allowed (NADIR_MAX_COLUMNS); raise it to read this object"
            )
        );
        let long = format!(
            "{}\n6,10.0.0.1,1,10.0.0.2,2,{}\n",
            nadir_flows::labels::HEADER,
            "x".repeat(2000)
        );
        let short_lines = Limits {
            line_bytes: 1000,
            ..Limits::default()
        };
        let error = read_sidecar(SIDECAR, long.as_bytes(), short_lines).unwrap_err();
        let message = error.to_string();
        assert!(
            !error.is_read()
                && message.starts_with(&format!(
                    "the ground truth {SIDECAR}: line 2 is 2024 bytes long"
                ))
                && message.contains("NADIR_MAX_LINE_BYTES"),
            "{message}"
        );
        // The defaults read it.
        assert_eq!(
            read_sidecar(SIDECAR, long.as_bytes(), Limits::default()).unwrap(),
            long.as_bytes()
        );
    }

    /// Fails with a connection reset after a few bytes.
    struct Resetting(usize);

    impl Read for Resetting {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset by peer",
                ));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(b'6');
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_sidecar_whose_read_fails_is_a_read_error_not_bad_input() {
        let error = read_sidecar(SIDECAR, Resetting(10), Limits::default()).unwrap_err();
        assert!(error.is_read(), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("reading the ground truth {SIDECAR}: connection reset by peer")
        );
    }

    #[test]
    fn a_truncated_gzip_says_so() {
        let mut cut = gz(b"duration,label\n1,normal\n".repeat(1000).as_slice());
        cut.truncate(cut.len() / 2);
        let error = inflate(&raw(&cut, "csv+gzip"), &cut, Limits::default()).unwrap_err();
        assert!(error.contains("truncated"), "{error}");
    }
}
