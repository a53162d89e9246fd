//! A labelled flow data set with planted anomalies, generated from a seed.
//!
//! The demo and the tests need data that any machine can make, that looks
//! like flow features, and whose answers are known: most flows are ordinary
//! client traffic; a few are port scans (many destination ports, tiny
//! packets, failed connections) and exfiltration (large, long uploads).
//! The same seed gives the same bytes.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Columns of the sample CSV, in order.
pub const COLUMNS: [&str; 10] = [
    "duration_s",
    "packets_out",
    "packets_in",
    "bytes_out",
    "bytes_in",
    "mean_packet_bytes",
    "dst_port",
    "distinct_dst_ports_60s",
    "failed_conn_ratio_60s",
    "label",
];

/// Share of planted anomalies: one flow in `ANOMALY_EVERY`.
pub const ANOMALY_EVERY: usize = 50;

/// `rows` flows as CSV text; every `ANOMALY_EVERY`-th flow (from a seeded
/// offset) is a planted `portscan` or `exfiltration`, the rest `normal`.
pub fn flow_csv(rows: usize, seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = String::with_capacity(rows * 64);
    out.push_str(&COLUMNS.join(","));
    out.push('\n');
    let offset = rng.random_range(0..ANOMALY_EVERY);
    for i in 0..rows {
        let row = if i % ANOMALY_EVERY == offset {
            if (i / ANOMALY_EVERY).is_multiple_of(2) {
                portscan(&mut rng)
            } else {
                exfiltration(&mut rng)
            }
        } else {
            normal(&mut rng)
        };
        out.push_str(&row);
        out.push('\n');
    }
    out
}

/// Roughly normal noise from a sum of uniforms (Irwin-Hall), enough here.
fn noise(rng: &mut ChaCha8Rng) -> f64 {
    (0..6).map(|_| rng.random::<f64>()).sum::<f64>() - 3.0
}

fn log_normal(rng: &mut ChaCha8Rng, median: f64, spread: f64) -> f64 {
    median * (spread * noise(rng)).exp()
}

/// One generated flow.
struct Flow {
    duration: f64,
    packets: (u64, u64),
    bytes: (u64, u64),
    dst_port: u16,
    distinct_ports: u64,
    failed_ratio: f64,
    label: &'static str,
}

impl Flow {
    fn csv(&self) -> String {
        let Flow {
            duration,
            packets: (p_out, p_in),
            bytes: (b_out, b_in),
            dst_port,
            distinct_ports,
            failed_ratio,
            label,
        } = self;
        let mean = (b_out + b_in) as f64 / (p_out + p_in).max(1) as f64;
        format!(
            "{duration:.3},{p_out},{p_in},{b_out},{b_in},{mean:.1},{dst_port},{distinct_ports},{failed_ratio:.3},{label}"
        )
    }
}

fn normal(rng: &mut ChaCha8Rng) -> String {
    let ports = [443u16, 443, 443, 80, 53, 22, 993];
    let port = ports[rng.random_range(0..ports.len())];
    let p_out = log_normal(rng, 12.0, 0.5).round().max(1.0) as u64;
    let p_in = (p_out as f64 * log_normal(rng, 1.4, 0.2)).round().max(1.0) as u64;
    let b_out = p_out * log_normal(rng, 110.0, 0.3).round() as u64;
    let b_in = p_in * log_normal(rng, 700.0, 0.3).round() as u64;
    let duration = log_normal(rng, 2.0, 0.6);
    let distinct = rng.random_range(1..4);
    let failed = (rng.random::<f64>() * 0.05).max(0.0);
    Flow {
        duration,
        packets: (p_out, p_in),
        bytes: (b_out, b_in),
        dst_port: port,
        distinct_ports: distinct,
        failed_ratio: failed,
        label: "normal",
    }
    .csv()
}

fn portscan(rng: &mut ChaCha8Rng) -> String {
    let port = rng.random_range(1..1024) as u16;
    let distinct = rng.random_range(800..2500);
    let failed = 0.9 + rng.random::<f64>() * 0.1;
    let duration = rng.random::<f64>() * 0.01;
    let p_in = rng.random_range(0..2);
    Flow {
        duration,
        packets: (1, p_in),
        bytes: (60, 0),
        dst_port: port,
        distinct_ports: distinct,
        failed_ratio: failed,
        label: "portscan",
    }
    .csv()
}

fn exfiltration(rng: &mut ChaCha8Rng) -> String {
    let p_out = rng.random_range(20_000..60_000);
    let b_out = p_out * rng.random_range(1300..1460);
    let p_in = p_out / 2;
    let duration = 600.0 + rng.random::<f64>() * 1200.0;
    Flow {
        duration,
        packets: (p_out, p_in),
        bytes: (b_out, p_in * 60),
        dst_port: 443,
        distinct_ports: 1,
        failed_ratio: 0.0,
        label: "exfiltration",
    }
    .csv()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::FlowTable;

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(flow_csv(500, 7), flow_csv(500, 7));
        assert_ne!(flow_csv(500, 7), flow_csv(500, 8));
    }

    #[test]
    fn it_is_a_valid_labelled_flow_csv_with_planted_anomalies() {
        let t = FlowTable::from_csv(flow_csv(1000, 1).as_bytes()).unwrap();
        assert_eq!(t.rows(), 1000);
        // Every column but the label and the destination port (identity, not a feature).
        assert_eq!(t.features.len(), COLUMNS.len() - 2);
        let labels = t.labels().unwrap();
        let anomalies = labels
            .iter()
            .filter(|l| l.as_deref() != Some("normal"))
            .count();
        assert_eq!(anomalies, 1000 / ANOMALY_EVERY);
        assert!(labels.iter().any(|l| l.as_deref() == Some("portscan")));
        assert!(labels.iter().any(|l| l.as_deref() == Some("exfiltration")));
    }
}
