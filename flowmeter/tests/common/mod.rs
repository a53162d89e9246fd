//! Writing classic pcap captures and the packets in them, for the tests of
//! this crate: whole in memory ([`pcap`]) or a record at a time
//! ([`pcap_header`], [`pcap_record`]) for a capture streamed as it is made.

// Each test binary includes this module and uses part of it.
#![allow(dead_code)]

use etherparse::PacketBuilder;

pub const S: i64 = 1_000_000_000;
/// 2026-01-01T00:00:00Z, in nanoseconds.
pub const T0: i64 = 1_767_225_600 * S;
/// The last second a classic pcap's 32-bit seconds can hold (February 2106).
pub const Y2106: i64 = 4_294_967_295 * S;

/// How a classic pcap writes its numbers and times.
#[derive(Debug, Clone, Copy)]
pub struct PcapForm {
    pub big_endian: bool,
    /// Nanosecond timestamps (magic `a1b23c4d`) rather than microseconds.
    pub nanos: bool,
}

impl PcapForm {
    /// Little-endian, microseconds: what most tools write.
    pub const USUAL: PcapForm = PcapForm {
        big_endian: false,
        nanos: false,
    };

    fn u32(self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u16(self, v: u16) -> [u8; 2] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
}

/// The 24-byte file header of a classic pcap.
pub fn pcap_header(form: PcapForm, linktype: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend(form.u32(if form.nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    out.extend(form.u16(2));
    out.extend(form.u16(4));
    out.extend(form.u32(0));
    out.extend(form.u32(0));
    out.extend(form.u32(65_535));
    out.extend(form.u32(linktype));
    out
}

/// Appends one packet record, stamped `ts` (nanoseconds since 1970), to `out`.
pub fn pcap_record(out: &mut Vec<u8>, form: PcapForm, ts: i64, frame: &[u8]) {
    let frac = if form.nanos { ts % S } else { ts % S / 1000 };
    out.extend(form.u32((ts / S) as u32));
    out.extend(form.u32(frac as u32));
    out.extend(form.u32(frame.len() as u32));
    out.extend(form.u32(frame.len() as u32));
    out.extend(frame);
}

/// A whole classic pcap of `frames` (time, bytes).
pub fn pcap(big_endian: bool, nanos: bool, linktype: u32, frames: &[(i64, Vec<u8>)]) -> Vec<u8> {
    let form = PcapForm { big_endian, nanos };
    let mut out = pcap_header(form, linktype);
    for (ts, frame) in frames {
        pcap_record(&mut out, form, *ts, frame);
    }
    out
}

/// A one-packet UDP flow from `src`:`port` to 10.0.0.2:53, on Ethernet.
pub fn udp(src: [u8; 4], port: u16) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4(src, [10, 0, 0, 2], 64)
        .udp(port, 53);
    let mut out = Vec::with_capacity(builder.size(1));
    builder.write(&mut out, b"q").unwrap();
    out
}

/// A one-packet UDP flow from 10.0.0.1:`port`.
pub fn udp_from(port: u16) -> Vec<u8> {
    udp([10, 0, 0, 1], port)
}
