//! A labelled traffic generator: a pcap of ordinary traffic between hosts,
//! with attacks mixed in, and the ground truth of which flows are attacks.
//!
//! The demo and the tests need captures that any machine can make and whose
//! answers are known. Ordinary traffic: web and TLS sessions (each after a
//! DNS lookup) with heavy-tailed sizes, intranet HTTP, NTP, interactive SSH
//! and file-server transfers. Attacks, at configurable rates: SYN and
//! connect port scans, a SYN flood from spoofed sources, SSH brute force,
//! DNS tunnelling, periodic C2 beaconing, and a slow exfiltration.
//!
//! The same [`Config`] (seed included) gives the same bytes. Packets are
//! produced session by session and written in time order through a heap
//! that holds only sessions still in progress, so captures of any length
//! take bounded memory. Nothing here opens a file: the caller passes the
//! writers. [`raw`] builds tiny captures of an exact shape for tests.

pub mod raw;
mod sessions;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::net::Ipv4Addr;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use sessions::Attack;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub seed: u64,
    /// Client hosts on the internal network (10.0.1.0/24).
    pub hosts: u16,
    /// Capture length, seconds.
    pub duration_s: u32,
    /// New ordinary sessions per client per minute.
    pub sessions_per_host_minute: f64,
    /// Attacks and how many times each happens in the capture.
    pub attacks: Vec<(Attack, u32)>,
    /// Capture start, seconds since the Unix epoch.
    pub start_s: u32,
    /// Names the traffic carries in DNS queries, TLS server names and HTTP
    /// Host headers (tests put hostile text here).
    pub names: Names,
}

/// Names that end up in flows: what a dashboard must show as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Names {
    /// External web sites, looked up by DNS and visited over TLS.
    pub sites: Vec<String>,
    /// The intranet web server's HTTP Host.
    pub intranet_host: String,
    /// The zone the DNS tunnel's queries end in.
    pub tunnel_domain: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            sites: sessions::SITES.iter().map(|s| s.to_string()).collect(),
            intranet_host: "intranet.corp.example".into(),
            tunnel_domain: "t.tunnel-example.net".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 7,
            hosts: 50,
            duration_s: 600,
            sessions_per_host_minute: 8.0,
            attacks: Attack::ALL.iter().map(|a| (*a, 1)).collect(),
            // 2026-01-01T00:00:00Z
            start_s: 1_767_225_600,
            names: Names::default(),
        }
    }
}

/// Sets TCP flags on a segment being built, from letters: `S` SYN, `A` ACK
/// (acknowledging `ack`), `P` PSH, `F` FIN, `R` RST; e.g. `"SA"`, `"FA"`.
pub fn with_tcp_flags(
    mut b: etherparse::PacketBuilderStep<etherparse::TcpHeader>,
    flags: &str,
    ack: u32,
) -> etherparse::PacketBuilderStep<etherparse::TcpHeader> {
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(ack);
    }
    if flags.contains('P') {
        b = b.psh();
    }
    if flags.contains('F') {
        b = b.fin();
    }
    if flags.contains('R') {
        b = b.rst();
    }
    b
}

/// Counts of what was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub packets: u64,
    pub bytes: u64,
    pub sessions: u64,
    pub attack_flows: u64,
}

/// A frame waiting to be written: time, insertion order, bytes.
type Pending = Reverse<(u64, u64, Vec<u8>)>;

/// Collects a session's frames and its ground truth.
pub(crate) struct Emitter {
    heap: BinaryHeap<Pending>,
    seq: u64,
    truth: Vec<String>,
}

impl Emitter {
    pub(crate) fn frame(&mut self, ts_ns: u64, bytes: Vec<u8>) {
        self.seq += 1;
        self.heap.push(Reverse((ts_ns, self.seq, bytes)));
    }

    pub(crate) fn label(
        &mut self,
        protocol: u8,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        label: &str,
    ) {
        self.truth.push(format!(
            "{protocol},{},{},{},{},{label}",
            src.0, src.1, dst.0, dst.1
        ));
    }
}

fn pcap_header(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&0i32.to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    out.write_all(&65_535u32.to_le_bytes())?;
    out.write_all(&1u32.to_le_bytes()) // Ethernet
}

fn pcap_record(out: &mut impl Write, ts_ns: u64, frame: &[u8]) -> io::Result<()> {
    out.write_all(&((ts_ns / 1_000_000_000) as u32).to_le_bytes())?;
    out.write_all(&((ts_ns % 1_000_000_000 / 1000) as u32).to_le_bytes())?;
    out.write_all(&(frame.len() as u32).to_le_bytes())?;
    out.write_all(&(frame.len() as u32).to_le_bytes())?;
    out.write_all(frame)
}

/// Writes the capture (pcap, Ethernet, microseconds) to `capture` and its
/// ground truth (`protocol,src_ip,src_port,dst_ip,dst_port,label` rows; the
/// format `nadir_flows::labels` reads) to `truth`.
pub fn generate(
    config: &Config,
    capture: &mut impl Write,
    truth: &mut impl Write,
) -> io::Result<Summary> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut world = sessions::World::new(config, &mut rng);
    let mut emitter = Emitter {
        heap: BinaryHeap::new(),
        seq: 0,
        truth: Vec::new(),
    };
    let mut summary = Summary::default();
    pcap_header(capture)?;
    writeln!(truth, "protocol,src_ip,src_port,dst_ip,dst_port,label")?;

    // Attacks start at seeded times inside the capture.
    let mut attacks: Vec<(u64, Attack)> = Vec::new();
    for &(attack, times) in &config.attacks {
        for _ in 0..times {
            let at = rng.random_range(0.05..0.85) * config.duration_s as f64;
            attacks.push(((at * 1e9) as u64, attack));
        }
    }
    attacks.sort_by_key(|(at, a)| (*at, *a as u8));
    let mut attacks = attacks.into_iter().peekable();

    let start_ns = config.start_s as u64 * 1_000_000_000;
    let second = 1_000_000_000u64;
    let rate_per_second = config.hosts as f64 * config.sessions_per_host_minute / 60.0;
    for s in 0..config.duration_s as u64 {
        let window = start_ns + s * second;
        // Ordinary sessions starting in this second.
        let mut expected = rate_per_second;
        while expected > 0.0 {
            if rng.random::<f64>() < expected.min(1.0) {
                let at = window + rng.random_range(0..second);
                world.normal_session(&mut rng, &mut emitter, at);
                summary.sessions += 1;
            }
            expected -= 1.0;
        }
        while let Some((at, attack)) = attacks.next_if(|(at, _)| *at < (s + 1) * second) {
            world.attack(&mut rng, &mut emitter, attack, start_ns + at);
        }
        // Everything before this second is final: no later session starts earlier.
        flush(&mut emitter, capture, Some(window), &mut summary)?;
        for row in emitter.truth.drain(..) {
            writeln!(truth, "{row}")?;
            summary.attack_flows += 1;
        }
    }
    flush(&mut emitter, capture, None, &mut summary)?;
    Ok(summary)
}

fn flush(
    emitter: &mut Emitter,
    out: &mut impl Write,
    before: Option<u64>,
    summary: &mut Summary,
) -> io::Result<()> {
    while let Some(Reverse((ts, _, _))) = emitter.heap.peek() {
        if before.is_some_and(|b| *ts >= b) {
            break;
        }
        let Reverse((ts, _, frame)) = emitter.heap.pop().unwrap();
        pcap_record(out, ts, &frame)?;
        summary.packets += 1;
        summary.bytes += frame.len() as u64 + 16;
    }
    Ok(())
}
