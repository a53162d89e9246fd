//! Ground truth for captures: which flows are which attack.
//!
//! A capture may come with a sidecar, `<capture key>.labels.csv`, whose
//! rows name flows by protocol and endpoints:
//!
//! ```text
//! protocol,src_ip,src_port,dst_ip,dst_port,label
//! 6,10.0.0.66,40022,10.0.1.5,22,ssh_bruteforce
//! ```
//!
//! A flow matches a row in either direction. With a sidecar, flows no row
//! names are `normal`. `nadir gen-capture` writes such sidecars.

use std::collections::HashMap;
use std::net::IpAddr;

use nadir_flowmeter::FlowRecord;

/// Suffix that makes an object in `raw` the ground truth of another.
pub const SIDECAR_SUFFIX: &str = ".labels.csv";
/// Header of the sidecar CSV.
pub const HEADER: &str = "protocol,src_ip,src_port,dst_ip,dst_port,label";

/// Labels that mean "not an attack"; any other label is an attack.
const BENIGN: [&str; 4] = ["normal", "benign", "0", "false"];

/// Marks a label that came from an analyst's verdict, not from the data.
pub const FROM_ANALYST: &str = " (analyst)";

/// Whether a flow's label (from the data or an analyst) names an attack.
pub fn is_attack(label: &str) -> bool {
    let label = label.trim().trim_end_matches(FROM_ANALYST);
    !BENIGN.contains(&label.to_ascii_lowercase().as_str())
}

pub fn is_sidecar(key: &str) -> bool {
    key.ends_with(SIDECAR_SUFFIX)
}

type Endpoints = (u8, (IpAddr, u16), (IpAddr, u16));

fn canonical(protocol: u8, a: (IpAddr, u16), b: (IpAddr, u16)) -> Endpoints {
    if a <= b {
        (protocol, a, b)
    } else {
        (protocol, b, a)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("labels line {line}: {reason}")]
pub struct LabelsError {
    pub line: usize,
    pub reason: String,
}

/// Ground truth read from a sidecar.
#[derive(Debug, Default)]
pub struct GroundTruth {
    by_flow: HashMap<Endpoints, String>,
}

impl GroundTruth {
    pub fn parse(text: &str) -> Result<Self, LabelsError> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, header)) if header.trim() == HEADER => {}
            _ => {
                return Err(LabelsError {
                    line: 1,
                    reason: format!("expected the header {HEADER:?}"),
                });
            }
        }
        let mut by_flow = HashMap::new();
        for (i, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: &str| LabelsError {
                line: i + 1,
                reason: reason.to_string(),
            };
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [protocol, src, sport, dst, dport, label] = fields[..] else {
                return Err(bad("expected 6 fields"));
            };
            let protocol: u8 = protocol
                .parse()
                .map_err(|_| bad("protocol is not a number 0-255"))?;
            let src: IpAddr = src
                .parse()
                .map_err(|_| bad("src_ip is not an IP address"))?;
            let dst: IpAddr = dst
                .parse()
                .map_err(|_| bad("dst_ip is not an IP address"))?;
            let sport: u16 = sport.parse().map_err(|_| bad("src_port is not a port"))?;
            let dport: u16 = dport.parse().map_err(|_| bad("dst_port is not a port"))?;
            by_flow.insert(
                canonical(protocol, (src, sport), (dst, dport)),
                label.to_string(),
            );
        }
        Ok(GroundTruth { by_flow })
    }

    /// The label of every flow: its row's, or `normal`.
    pub fn labels(&self, flows: &[FlowRecord]) -> Vec<Option<String>> {
        flows
            .iter()
            .map(|f| {
                let key = canonical(f.protocol, (f.src, f.src_port), (f.dst, f.dst_port));
                Some(
                    self.by_flow
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| "normal".to_string()),
                )
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_flow.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_flow.is_empty()
    }
}
