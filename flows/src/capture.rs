//! Flow records from the flow meter as a SILVER table.
//!
//! docs/silver.md documents every column: identity and times, then the
//! features (per-direction counts, sizes, inter-arrival times, TCP flags,
//! per-host context), then application names as text.

use nadir_flowmeter::FlowRecord;
use nadir_flowmeter::record::{Direction, FLAG_NAMES};
use polars::io::parquet::write::BatchedWriter;
use polars::prelude::*;

use std::io::Write;

use crate::labels::GroundTruth;
use crate::table::{FlowError, FlowTable, LABEL, flow_id_column, parquet_error, parquet_writer};

/// Builds the SILVER table of `flows`, with `labels` (one per flow) if
/// given; `flow_id`s count from `first_id`.
pub fn table_from_flows(
    flows: &[FlowRecord],
    labels: Option<Vec<Option<String>>>,
    first_id: u64,
) -> Result<FlowTable, FlowError> {
    let n = flows.len();
    let mut columns: Vec<Column> = Vec::new();
    let mut features: Vec<String> = Vec::new();
    let mut text: Vec<String> = Vec::new();
    macro_rules! col {
        ($name:expr, $values:expr) => {
            columns.push(Column::new($name.into(), $values))
        };
    }
    macro_rules! feature {
        ($name:expr, $f:expr) => {{
            let name: String = $name.into();
            let values: Vec<f64> = flows.iter().map($f).collect();
            columns.push(Column::new(name.as_str().into(), values));
            features.push(name);
        }};
    }
    columns.push(flow_id_column(first_id, n));
    for (name, f) in [
        (
            "src_ip",
            (|r: &FlowRecord| r.src.to_string()) as fn(&FlowRecord) -> String,
        ),
        ("dst_ip", |r| r.dst.to_string()),
    ] {
        col!(name, flows.iter().map(f).collect::<Vec<_>>());
        text.push(name.into());
    }
    col!(
        "src_port",
        flows
            .iter()
            .map(|r| r.src_port as u32)
            .collect::<Vec<u32>>()
    );
    col!(
        "dst_port",
        flows
            .iter()
            .map(|r| r.dst_port as u32)
            .collect::<Vec<u32>>()
    );
    col!(
        "protocol",
        flows
            .iter()
            .map(|r| r.protocol as u32)
            .collect::<Vec<u32>>()
    );
    col!(
        "first_seen_ns",
        flows.iter().map(|r| r.first_ns).collect::<Vec<i64>>()
    );
    col!(
        "last_seen_ns",
        flows.iter().map(|r| r.last_ns).collect::<Vec<i64>>()
    );
    col!(
        "end_reason",
        flows.iter().map(|r| r.end.name()).collect::<Vec<&str>>()
    );
    text.push("end_reason".into());

    feature!("duration_s", |r| r.duration_s());
    for (dir, get) in [
        (
            "fwd",
            (|r: &FlowRecord| &r.fwd) as fn(&FlowRecord) -> &Direction,
        ),
        ("bwd", |r| &r.bwd),
    ] {
        feature!(format!("{dir}_packets"), |r| get(r).packets as f64);
        feature!(format!("{dir}_bytes"), |r| get(r).bytes as f64);
        feature!(format!("{dir}_size_min"), |r| get(r).sizes.min_or_zero());
        feature!(format!("{dir}_size_mean"), |r| get(r).sizes.mean());
        feature!(format!("{dir}_size_std"), |r| get(r).sizes.std());
        feature!(format!("{dir}_size_max"), |r| get(r).sizes.max_or_zero());
        feature!(format!("{dir}_iat_min_s"), |r| get(r).iat.min_or_zero());
        feature!(format!("{dir}_iat_mean_s"), |r| get(r).iat.mean());
        feature!(format!("{dir}_iat_std_s"), |r| get(r).iat.std());
        feature!(format!("{dir}_iat_max_s"), |r| get(r).iat.max_or_zero());
        for (i, flag) in FLAG_NAMES.iter().enumerate() {
            feature!(format!("{dir}_{flag}"), |r| get(r).flags[i] as f64);
        }
    }
    feature!("handshake_completed", |r| r.handshake_completed as u8
        as f64);
    feature!("src_flows_60s", |r| r.context.flows as f64);
    feature!(
        "src_distinct_dst_hosts_60s",
        |r| r.context.distinct_dst_hosts as f64
    );
    feature!(
        "src_distinct_dst_ports_60s",
        |r| r.context.distinct_dst_ports as f64
    );
    feature!("src_failed_ratio_60s", |r| r.context.failed_ratio);
    feature!("src_bytes_out_60s", |r| r.context.bytes_out as f64);

    for (name, f) in [
        (
            "dns_query",
            (|r: &FlowRecord| r.app.dns_query.clone()) as fn(&FlowRecord) -> Option<String>,
        ),
        ("dns_qtype", |r| r.app.dns_qtype.clone()),
        ("dns_rcode", |r| r.app.dns_rcode.clone()),
        ("tls_sni", |r| r.app.tls_sni.clone()),
        ("http_host", |r| r.app.http_host.clone()),
        ("http_method", |r| r.app.http_method.clone()),
    ] {
        col!(name, flows.iter().map(f).collect::<Vec<Option<String>>>());
        text.push(name.into());
    }
    let labelled = labels.is_some();
    if let Some(labels) = labels {
        col!(LABEL, labels);
    }
    let frame = DataFrame::new(n, columns).map_err(|e| FlowError::Csv(e.to_string()))?;
    Ok(FlowTable {
        frame,
        features,
        labelled,
        text,
    })
}

/// Flows per Parquet row group written by [`SilverWriter`].
const BATCH: usize = 65_536;

/// What a [`SilverWriter`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SilverSummary {
    pub rows: u64,
    pub features: Vec<String>,
    pub text: Vec<String>,
    pub labelled: bool,
}

/// Writes flows as SILVER Parquet as they come, a row group at a time, so
/// a partition of any number of flows is written in bounded memory.
pub struct SilverWriter<'a, W: Write> {
    out: Option<W>,
    writer: Option<BatchedWriter<W>>,
    batch: Vec<FlowRecord>,
    truth: Option<&'a GroundTruth>,
    summary: SilverSummary,
}

impl<'a, W: Write> SilverWriter<'a, W> {
    /// Writes to `out`, labelling flows from `truth` if given.
    pub fn new(out: W, truth: Option<&'a GroundTruth>) -> Self {
        SilverWriter {
            out: Some(out),
            writer: None,
            batch: Vec::with_capacity(BATCH),
            truth,
            summary: SilverSummary {
                rows: 0,
                features: Vec::new(),
                text: Vec::new(),
                labelled: truth.is_some(),
            },
        }
    }

    pub fn push(&mut self, flow: FlowRecord) -> Result<(), FlowError> {
        self.batch.push(flow);
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), FlowError> {
        let labels = self.truth.map(|t| t.labels(&self.batch));
        let table = table_from_flows(&self.batch, labels, self.summary.rows)?;
        if self.writer.is_none() {
            let out = self.out.take().expect("output taken only here");
            let writer = parquet_writer(out)
                .batched(table.frame.schema())
                .map_err(parquet_error)?;
            self.writer = Some(writer);
        }
        self.writer
            .as_mut()
            .expect("created above")
            .write_batch(&table.frame)
            .map_err(parquet_error)?;
        self.summary.rows += self.batch.len() as u64;
        self.summary.features = table.features;
        self.summary.text = table.text;
        self.batch.clear();
        Ok(())
    }

    /// Writes what is left and the Parquet footer.
    pub fn finish(mut self) -> Result<SilverSummary, FlowError> {
        if !self.batch.is_empty() || self.writer.is_none() {
            self.flush()?;
        }
        self.writer
            .as_ref()
            .expect("flushed above")
            .finish()
            .map_err(parquet_error)?;
        Ok(self.summary)
    }
}

/// Why a capture could not become SILVER.
#[derive(Debug, thiserror::Error)]
pub enum CaptureToSilverError {
    #[error(transparent)]
    Capture(#[from] nadir_flowmeter::CaptureError),
    #[error("writing SILVER: {0}")]
    Silver(#[from] FlowError),
}

/// Meters a capture straight into SILVER Parquet written to `out`,
/// labelling flows from `truth`: the capture is read once, and memory holds
/// only what the meter holds (see [`nadir_flowmeter::stream_flows`]).
pub fn capture_to_silver<'r, W: Write>(
    source: impl Into<nadir_flowmeter::Source<'r>>,
    config: nadir_flowmeter::MeterConfig,
    truth: Option<&GroundTruth>,
    out: W,
    progress: impl FnMut(u64),
) -> Result<(nadir_flowmeter::MeterStats, SilverSummary), CaptureToSilverError> {
    let mut writer = SilverWriter::new(out, truth);
    let mut failed = None;
    let stats = nadir_flowmeter::stream_flows(source, config, progress, |flow| {
        if failed.is_none()
            && let Err(e) = writer.push(flow)
        {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok((stats, writer.finish()?))
}
