//! Flow records from the flow meter as a SILVER table.
//!
//! docs/silver.md documents every column: identity and times, then the
//! features (per-direction counts, sizes, inter-arrival times, TCP flags,
//! per-host context), then application names as text.

use nadir_flowmeter::FlowRecord;
use nadir_flowmeter::record::{Direction, FLAG_NAMES};
use polars::prelude::*;

use crate::table::{FLOW_ID, FlowError, FlowTable, LABEL};

/// Builds the SILVER table of `flows`, with `labels` (one per flow) if given.
pub fn table_from_flows(
    flows: &[FlowRecord],
    labels: Option<Vec<Option<String>>>,
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
    col!(FLOW_ID, (0..n as u64).collect::<Vec<u64>>());
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
