//! The flow record: one bidirectional flow with its features.
//!
//! "Forward" is the direction of the flow's first packet (its source);
//! "backward" the other. Sizes are IP packet lengths (header and payload,
//! from the IP header, so a snaplen does not shrink them), in bytes; times
//! are seconds. docs/silver.md documents every column.

use std::net::IpAddr;

/// Running min/mean/standard deviation/max (Welford).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    mean: f64,
    m2: f64,
}

impl Stats {
    /// `count` values all equal to `value`: what a summary that gives only
    /// a total (a Zeek log) says about a distribution.
    pub fn uniform(count: u64, value: f64) -> Self {
        if count == 0 {
            return Stats::default();
        }
        Stats {
            count,
            min: value,
            max: value,
            mean: value,
            m2: 0.0,
        }
    }

    pub fn add(&mut self, x: f64) {
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Mean, 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.mean }
    }

    /// Population standard deviation, 0 with fewer than two values.
    pub fn std(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / self.count as f64).sqrt()
        }
    }

    pub fn min_or_zero(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.min }
    }

    pub fn max_or_zero(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.max }
    }
}

/// TCP flag counts in one direction, in the order SYN ACK PSH RST FIN URG ECE CWR.
pub const FLAG_NAMES: [&str; 8] = ["syn", "ack", "psh", "rst", "fin", "urg", "ece", "cwr"];

/// One direction of a flow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Direction {
    pub packets: u64,
    pub bytes: u64,
    pub sizes: Stats,
    /// Inter-arrival times between this direction's packets, seconds.
    pub iat: Stats,
    pub last_ts_ns: Option<i64>,
    /// Counts, indexed like [`FLAG_NAMES`].
    pub flags: [u32; 8],
}

/// Why a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Idle,
    Active,
    Fin,
    Rst,
    EndOfCapture,
    /// Ended early: too many flows were open (`max_open_flows`).
    Evicted,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Idle => "idle",
            EndReason::Active => "active",
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::EndOfCapture => "end",
            EndReason::Evicted => "evicted",
        }
    }
}

/// Application-level names from a flow's first packets: text for people,
/// not features.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppNames {
    pub dns_query: Option<String>,
    /// The first question's record type (`A`, `TXT`, `NULL`, `TYPE65`).
    pub dns_qtype: Option<String>,
    pub dns_rcode: Option<String>,
    pub tls_sni: Option<String>,
    pub http_host: Option<String>,
    pub http_method: Option<String>,
}

/// Per-host context over a sliding window ending at the flow's start,
/// counting the flows the source started in that window (this one included).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostContext {
    pub flows: u32,
    pub distinct_dst_hosts: u32,
    pub distinct_dst_ports: u32,
    /// Share of those flows that failed or were rejected.
    pub failed_ratio: f64,
    pub bytes_out: u64,
}

/// A finished flow.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRecord {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Ports for TCP and UDP; ICMP type (of the request) and code; 0 otherwise.
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub first_ns: i64,
    pub last_ns: i64,
    pub fwd: Direction,
    pub bwd: Direction,
    pub handshake_completed: bool,
    pub end: EndReason,
    pub app: AppNames,
    pub context: HostContext,
}

impl FlowRecord {
    pub fn duration_s(&self) -> f64 {
        self.last_ns.saturating_sub(self.first_ns) as f64 / 1e9
    }

    /// A TCP connection that never completed its handshake, or that the
    /// responder reset before it carried data.
    pub fn failed(&self) -> bool {
        self.protocol == 6
            && (!self.handshake_completed || (self.bwd.flags[3] > 0 && self.bwd.packets <= 2))
    }
}

/// Orders flows by their first packet (ties broken by identity), the order
/// of SILVER and of the per-host context.
pub fn sort_flows(flows: &mut [FlowRecord]) {
    flows.sort_by(|x, y| {
        (
            x.first_ns, x.src, x.dst, x.src_port, x.dst_port, x.protocol, x.last_ns,
        )
            .cmp(&(
                y.first_ns, y.src, y.dst, y.src_port, y.dst_port, y.protocol, y.last_ns,
            ))
    });
}
