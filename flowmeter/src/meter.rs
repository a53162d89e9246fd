//! Flow assembly: packets to bidirectional flows.
//!
//! A flow is keyed by the canonical 5-tuple (protocol and the two endpoints
//! in a fixed order; for ICMP, the addresses with the request's type and
//! code, so an echo and its reply are one flow). The endpoint that sent the
//! first packet is the source. A flow ends after `idle_timeout` without a
//! packet, after `active_timeout` from its first packet, or by TCP teardown:
//! a RST, or a FIN from each side (the last ACKs still count towards it; a
//! new SYN starts a new flow). Non-first IP fragments count towards the flow
//! of their first fragment.

use std::cmp::{Ordering, Reverse};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::IpAddr;

use crate::app;
use crate::capture::Frame;
use crate::packet::{self, Packet, Transport, tcp_flag};
use crate::record::{AppNames, Direction, EndReason, FlowRecord, HostContext};

/// The hasher of the meter's tables: foldhash, seeded at random per table
/// (so a crafted capture cannot aim at one seed), several times faster than
/// the standard library's SipHash on a flow key.
type Hasher = foldhash::fast::RandomState;

/// Timeouts and windows, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterConfig {
    pub idle_timeout_ns: i64,
    pub active_timeout_ns: i64,
    /// Width of the per-host context window.
    pub context_window_ns: i64,
    /// How many payload-carrying packets of a flow are looked at for
    /// application names.
    pub inspect_packets: u32,
    /// Flows open at once; at the limit the oldest is ended (as `evicted`)
    /// to make room, so memory stays bounded whatever the capture holds.
    pub max_open_flows: usize,
    /// A packet stamped this much after the meter's clock is skipped: one
    /// bogus timestamp (a packet dated 2106) would otherwise stop every
    /// flow from expiring. Packets this much before it move the clock back
    /// (the bogus one was the first).
    pub max_clock_jump_ns: i64,
    /// A gzip capture may expand at most this many times the compressed
    /// bytes read (decompression bombs); `u64::MAX` for no limit.
    pub max_gzip_ratio: u64,
}

const SECOND: i64 = 1_000_000_000;

impl Default for MeterConfig {
    fn default() -> Self {
        MeterConfig {
            idle_timeout_ns: 120 * SECOND,
            active_timeout_ns: 1800 * SECOND,
            context_window_ns: 60 * SECOND,
            inspect_packets: 8,
            // About 2–3 KB each at the peak: ~1.5 GB at worst, inside the
            // transform Deployment's 2 GiB memory limit.
            max_open_flows: 500_000,
            max_clock_jump_ns: 30 * 24 * 3600 * SECOND,
            max_gzip_ratio: crate::capture::DEFAULT_GZIP_RATIO,
        }
    }
}

/// After a teardown, late packets without SYN still join the closed flow for this long.
const CLOSE_GRACE_NS: i64 = 5 * SECOND;
/// How often (capture time) idle flows are looked for.
const SCAN_EVERY_NS: i64 = 5 * SECOND;

/// What the meter saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterStats {
    pub packets: u64,
    pub ip_packets: u64,
    /// Packets that count towards no flow, by reason.
    pub skipped: BTreeMap<String, u64>,
    pub flows: u64,
    /// Packets whose timestamp is earlier than one already seen.
    pub out_of_order: u64,
    /// Flows ended early because `max_open_flows` were open.
    pub evicted: u64,
    /// Times the clock moved back by more than `max_clock_jump_ns`.
    pub clock_resets: u64,
    pub capture_bytes: u64,
}

impl MeterStats {
    pub fn skip(&mut self, reason: &str) {
        self.skip_n(reason, 1);
    }

    /// Counts `n` packets skipped for `reason`.
    pub fn skip_n(&mut self, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        // Looked up before inserting: a capture of ARP skips every packet.
        match self.skipped.get_mut(reason) {
            Some(count) => *count = count.saturating_add(n),
            None => {
                self.skipped.insert(reason.to_string(), n);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    protocol: u8,
    a: (IpAddr, u16),
    b: (IpAddr, u16),
    /// ICMP request type and code (zero for other protocols).
    icmp: (u8, u8),
}

struct ActiveFlow {
    record: FlowRecord,
    /// Position among flows started, to tell apart flows starting together.
    seq: u64,
    src_endpoint: (IpAddr, u16),
    closing: Option<(i64, EndReason)>,
    /// Handshake progress: 1 SYN seen, 2 SYN-ACK seen, 3 completed.
    handshake: u8,
    fin_fwd: bool,
    fin_bwd: bool,
    inspected: u32,
}

impl ActiveFlow {
    /// Why a flow that has this packet (at `ts`, a fresh SYN or not) next
    /// ends before it, if it does.
    fn ends_before(&self, ts: i64, is_syn: bool, config: &MeterConfig) -> Option<EndReason> {
        if let Some((closed_at, reason)) = self.closing {
            (is_syn || ts.saturating_sub(closed_at) > CLOSE_GRACE_NS).then_some(reason)
        } else if ts.saturating_sub(self.record.last_ns) > config.idle_timeout_ns {
            Some(EndReason::Idle)
        } else if ts.saturating_sub(self.record.first_ns) > config.active_timeout_ns {
            Some(EndReason::Active)
        } else {
            None
        }
    }
}

/// The order flows leave in: when the open ones started, and the finished
/// ones waiting for every flow started before them to finish.
#[derive(Default)]
struct Order {
    /// First-packet times of the open flows, oldest first.
    starts: BTreeMap<(i64, u64), FlowKey>,
    /// Flows started so far (each one's `seq`).
    started: u64,
    finished: BinaryHeap<Reverse<Finished>>,
}

impl Order {
    /// Notes a flow starting at `ts`; returns its `seq`.
    fn open(&mut self, ts: i64, key: FlowKey) -> u64 {
        self.started += 1;
        self.starts.insert((ts, self.started), key);
        self.started
    }

    /// Ends a flow for `reason`.
    fn close(&mut self, mut flow: ActiveFlow, reason: EndReason) {
        flow.record.end = reason;
        flow.record.handshake_completed = flow.handshake == 3;
        self.starts.remove(&(flow.record.first_ns, flow.seq));
        self.finished.push(Reverse(Finished(flow.record)));
    }
}

/// A finished flow waiting for its turn, ordered as [`crate::record::sort_flows`].
struct Finished(FlowRecord);

impl Finished {
    fn key(&self) -> (i64, IpAddr, IpAddr, u16, u16, u8, i64) {
        let r = &self.0;
        (
            r.first_ns, r.src, r.dst, r.src_port, r.dst_port, r.protocol, r.last_ns,
        )
    }
}

impl PartialEq for Finished {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Finished {}
impl PartialOrd for Finished {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Finished {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// The flow meter. Feed it frames; collect finished flows, in the order of
/// their first packet.
///
/// A finished flow is handed out once no flow still open started before
/// it, so flows come out sorted while memory holds only the open flows and
/// the finished ones started after the oldest open flow.
pub struct FlowMeter {
    config: MeterConfig,
    flows: HashMap<FlowKey, ActiveFlow, Hasher>,
    order: Order,
    /// First fragments' flows, by (source, destination, protocol, id).
    fragments: HashMap<(IpAddr, IpAddr, u8, u32), (FlowKey, i64), Hasher>,
    stats: MeterStats,
    now_ns: i64,
    last_scan_ns: i64,
}

/// ICMP replies and errors mapped to their request type.
fn icmp_request_type(protocol: u8, kind: u8) -> u8 {
    match (protocol, kind) {
        (1, 0) => 8,      // echo reply -> echo request
        (1, 14) => 13,    // timestamp reply
        (58, 129) => 128, // ICMPv6 echo reply
        (58, 136) => 135, // neighbor advertisement -> solicitation
        _ => kind,
    }
}

impl FlowMeter {
    pub fn new(config: MeterConfig) -> Self {
        FlowMeter {
            config,
            flows: HashMap::default(),
            order: Order::default(),
            fragments: HashMap::default(),
            stats: MeterStats::default(),
            now_ns: i64::MIN,
            last_scan_ns: i64::MIN,
        }
    }

    /// Flows in progress.
    pub fn active_flows(&self) -> usize {
        self.flows.len()
    }

    /// Accounts one captured frame.
    pub fn observe(&mut self, frame: &Frame<'_>) {
        self.stats.packets += 1;
        match packet::decode(frame.ts_ns, frame.linktype, frame.data) {
            Ok(p) => {
                self.stats.ip_packets += 1;
                self.add(p);
            }
            Err(skip) => self.stats.skip(skip.reason()),
        }
    }

    /// Moves into `out`, in order, the finished flows that no open flow
    /// started before.
    pub fn drain_finished(&mut self, out: &mut Vec<FlowRecord>) {
        if self.order.finished.is_empty() {
            return;
        }
        let oldest_open = self
            .order
            .starts
            .first_key_value()
            .map_or(i64::MAX, |((t, _), _)| *t);
        let ready_before = oldest_open.min(self.now_ns);
        let finished = &mut self.order.finished;
        while let Some(Reverse(next)) = finished.peek() {
            if next.0.first_ns >= ready_before {
                break;
            }
            out.push(finished.pop().unwrap().0.0);
        }
    }

    /// Ends every flow still open; returns the statistics.
    pub fn finish(mut self, out: &mut Vec<FlowRecord>) -> MeterStats {
        let flows: Vec<ActiveFlow> = self.flows.drain().map(|(_, f)| f).collect();
        for flow in flows {
            let reason = flow
                .closing
                .map(|(_, r)| r)
                .unwrap_or(EndReason::EndOfCapture);
            self.order.close(flow, reason);
        }
        while let Some(Reverse(next)) = self.order.finished.pop() {
            out.push(next.0);
        }
        // Every flow started has ended by now.
        self.stats.flows = self.order.started;
        self.stats
    }

    /// Ends the flow that started first, to make room for a new one.
    fn evict_oldest(&mut self) {
        let Some((_, key)) = self.order.starts.first_key_value() else {
            return;
        };
        let key = *key;
        if let Some(flow) = self.flows.remove(&key) {
            self.stats.evicted += 1;
            self.order.close(flow, EndReason::Evicted);
        }
    }

    fn expire(&mut self, now: i64) {
        let config = self.config;
        let expired: Vec<(FlowKey, EndReason)> = self
            .flows
            .iter()
            .filter_map(|(key, f)| f.ends_before(now, false, &config).map(|r| (*key, r)))
            .collect();
        for (key, reason) in expired {
            let flow = self.flows.remove(&key).expect("listed above");
            self.order.close(flow, reason);
        }
        self.fragments
            .retain(|_, (_, ts)| now.saturating_sub(*ts) <= 30 * SECOND);
    }

    fn add(&mut self, p: Packet<'_>) {
        let ts = p.ts_ns;
        let jump = self.config.max_clock_jump_ns;
        if self.now_ns != i64::MIN && ts > self.now_ns.saturating_add(jump) {
            self.stats
                .skip("timestamp far after the packets before it (max_clock_jump)");
            return;
        }
        if ts < self.now_ns.saturating_sub(jump) {
            self.stats.clock_resets += 1;
            self.now_ns = ts;
            self.last_scan_ns = ts;
        } else if ts < self.now_ns {
            self.stats.out_of_order += 1;
        } else {
            self.now_ns = ts;
        }
        if self.last_scan_ns == i64::MIN {
            self.last_scan_ns = ts;
        } else if self.now_ns.saturating_sub(self.last_scan_ns) >= SCAN_EVERY_NS {
            self.last_scan_ns = self.now_ns;
            self.expire(self.now_ns);
        }

        let (sport, dport, flags, icmp) = match p.transport {
            Transport::Tcp {
                sport,
                dport,
                flags,
            } => (sport, dport, flags, (0, 0)),
            Transport::Udp { sport, dport } => (sport, dport, 0, (0, 0)),
            Transport::Icmp { kind, code } => {
                (0, 0, 0, (icmp_request_type(p.protocol, kind), code))
            }
            Transport::Other => (0, 0, 0, (0, 0)),
        };
        let fragment_key = p.fragment.map(|f| (p.src, p.dst, p.protocol, f.id));
        let key = match p.fragment {
            Some(f) if !f.first => match self.fragments.get(&fragment_key.unwrap()) {
                Some((key, _)) => *key,
                None => {
                    self.stats
                        .skip("IP fragment whose first fragment was not seen");
                    return;
                }
            },
            _ => {
                let (x, y) = ((p.src, sport), (p.dst, dport));
                let (a, b) = if x <= y { (x, y) } else { (y, x) };
                FlowKey {
                    protocol: p.protocol,
                    a,
                    b,
                    icmp,
                }
            }
        };
        if let (Some(f), Some(fk)) = (p.fragment, fragment_key)
            && f.first
        {
            self.fragments.insert(fk, (key, ts));
        }

        let is_syn = flags & tcp_flag::SYN != 0 && flags & tcp_flag::ACK == 0;
        let config = self.config;
        if self.flows.len() >= config.max_open_flows.max(1) && !self.flows.contains_key(&key) {
            self.evict_oldest();
        }
        let new_flow = |seq| ActiveFlow {
            seq,
            record: FlowRecord {
                src: p.src,
                dst: p.dst,
                src_port: if icmp != (0, 0) { icmp.0 as u16 } else { sport },
                dst_port: if icmp != (0, 0) { icmp.1 as u16 } else { dport },
                protocol: p.protocol,
                first_ns: ts,
                last_ns: ts,
                fwd: Direction::default(),
                bwd: Direction::default(),
                handshake_completed: false,
                end: EndReason::EndOfCapture,
                app: AppNames::default(),
                context: HostContext::default(),
            },
            src_endpoint: (p.src, sport),
            closing: None,
            handshake: 0,
            fin_fwd: false,
            fin_bwd: false,
            inspected: 0,
        };
        let order = &mut self.order;
        let flow = match self.flows.entry(key) {
            Entry::Occupied(entry) => {
                let flow = entry.into_mut();
                if let Some(reason) = flow.ends_before(ts, is_syn, &config) {
                    let ended = std::mem::replace(flow, new_flow(order.open(ts, key)));
                    order.close(ended, reason);
                }
                flow
            }
            Entry::Vacant(entry) => entry.insert(new_flow(order.open(ts, key))),
        };
        // Ports decide the direction when the packet has them (a flow to
        // oneself); a non-first fragment has none, and its address decides.
        let forward = if matches!(p.transport, Transport::Tcp { .. } | Transport::Udp { .. }) {
            (p.src, sport) == flow.src_endpoint
        } else {
            p.src == flow.src_endpoint.0
        };
        flow.record.last_ns = flow.record.last_ns.max(ts);
        let dir = if forward {
            &mut flow.record.fwd
        } else {
            &mut flow.record.bwd
        };
        dir.packets += 1;
        dir.bytes += p.ip_len as u64;
        dir.sizes.add(p.ip_len as f64);
        if let Some(last) = dir.last_ts_ns {
            dir.iat.add(ts.saturating_sub(last).max(0) as f64 / 1e9);
        }
        dir.last_ts_ns = Some(dir.last_ts_ns.map_or(ts, |l| l.max(ts)));
        if p.protocol == 6 {
            for (i, bit) in [
                tcp_flag::SYN,
                tcp_flag::ACK,
                tcp_flag::PSH,
                tcp_flag::RST,
                tcp_flag::FIN,
                tcp_flag::URG,
                tcp_flag::ECE,
                tcp_flag::CWR,
            ]
            .into_iter()
            .enumerate()
            {
                if flags & bit != 0 {
                    dir.flags[i] = dir.flags[i].saturating_add(1);
                }
            }
            let syn = flags & tcp_flag::SYN != 0;
            let ack = flags & tcp_flag::ACK != 0;
            flow.handshake = match (flow.handshake, forward, syn, ack) {
                (0, true, true, false) => 1,
                (1, false, true, true) => 2,
                (2, true, false, true) => 3,
                (h, _, _, _) => h,
            };
            if flags & tcp_flag::FIN != 0 {
                if forward {
                    flow.fin_fwd = true;
                } else {
                    flow.fin_bwd = true;
                }
            }
            if flow.closing.is_none() {
                if flags & tcp_flag::RST != 0 {
                    flow.closing = Some((ts, EndReason::Rst));
                } else if flow.fin_fwd && flow.fin_bwd {
                    flow.closing = Some((ts, EndReason::Fin));
                }
            }
        }
        if flow.inspected < config.inspect_packets && !p.payload.is_empty() {
            flow.inspected += 1;
            app::inspect(&mut flow.record.app, p.protocol, sport, dport, p.payload);
        }
    }
}
