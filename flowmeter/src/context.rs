//! Per-host context: what each flow's source did in the window before it.
//!
//! For every flow, over the flows its source started in the preceding
//! window (60 s by default, this flow included): how many, to how many
//! distinct hosts and ports, the share that failed, and the bytes sent.
//! These make scans, floods and brute force visible to detectors that look
//! at one flow at a time.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::record::{FlowRecord, HostContext};

struct Entry {
    first_ns: i64,
    dst: IpAddr,
    dst_port: u16,
    failed: bool,
    bytes_out: u64,
}

#[derive(Default)]
struct Window {
    entries: VecDeque<Entry>,
    hosts: HashMap<IpAddr, u32>,
    ports: HashMap<u16, u32>,
    failed: u32,
    bytes_out: u64,
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, key: K) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

/// Per-host windows, fed flows in the order of their first packet.
pub struct HostContexts {
    window_ns: i64,
    windows: HashMap<IpAddr, Window>,
    added: u64,
}

impl HostContexts {
    pub fn new(window_ns: i64) -> Self {
        HostContexts {
            window_ns,
            windows: HashMap::new(),
            added: 0,
        }
    }

    /// Fills `flow.context` from the flows its source started in the window
    /// before it (this one included).
    pub fn add(&mut self, flow: &mut FlowRecord) {
        let window_ns = self.window_ns;
        let w = self.windows.entry(flow.src).or_default();
        while let Some(old) = w.entries.front() {
            if flow.first_ns.saturating_sub(old.first_ns) <= window_ns {
                break;
            }
            let old = w.entries.pop_front().unwrap();
            decrement(&mut w.hosts, old.dst);
            decrement(&mut w.ports, old.dst_port);
            w.failed -= old.failed as u32;
            // Saturating: a crafted record (a Zeek log) may give any count.
            w.bytes_out = w.bytes_out.saturating_sub(old.bytes_out);
        }
        let entry = Entry {
            first_ns: flow.first_ns,
            dst: flow.dst,
            dst_port: flow.dst_port,
            failed: flow.failed(),
            bytes_out: flow.fwd.bytes,
        };
        *w.hosts.entry(entry.dst).or_default() += 1;
        *w.ports.entry(entry.dst_port).or_default() += 1;
        w.failed += entry.failed as u32;
        w.bytes_out = w.bytes_out.saturating_add(entry.bytes_out);
        w.entries.push_back(entry);
        let n = w.entries.len() as u32;
        flow.context = HostContext {
            flows: n,
            distinct_dst_hosts: w.hosts.len() as u32,
            distinct_dst_ports: w.ports.len() as u32,
            failed_ratio: w.failed as f64 / n as f64,
            bytes_out: w.bytes_out,
        };
        // Now and then, forget sources whose last flow left the window:
        // memory follows the hosts active in the last window, not all hosts seen.
        self.added += 1;
        if self.added.is_multiple_of(65_536) {
            let now = flow.first_ns;
            self.windows.retain(|_, w| {
                w.entries
                    .back()
                    .is_some_and(|e| now.saturating_sub(e.first_ns) <= window_ns)
            });
        }
    }
}

/// Fills `context` of every flow. `flows` must be sorted by `first_ns`.
pub fn add_host_context(flows: &mut [FlowRecord], window_ns: i64) {
    let mut contexts = HostContexts::new(window_ns);
    for flow in flows.iter_mut() {
        contexts.add(flow);
    }
}
