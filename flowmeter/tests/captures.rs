//! The flow meter on captures the tests write: every container format and
//! link type, flow assembly rules, application names, and broken input.

mod common;

use std::io::Write;
use std::net::IpAddr;

use etherparse::{PacketBuilder, VlanId};
use nadir_flowmeter::record::EndReason;
use nadir_flowmeter::{
    CaptureError, FlowRecord, MeterConfig, MeterStats, Source, flows_from_capture,
};

use common::{S, T0, Y2106, pcap, udp_from};

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 0, 0, 2];
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

// ---- writing captures -------------------------------------------------------

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

fn block(kind: u32, body: Vec<u8>) -> Vec<u8> {
    let len = (body.len() + 12) as u32;
    let mut b = Vec::new();
    b.extend(kind.to_le_bytes());
    b.extend(len.to_le_bytes());
    b.extend(body);
    b.extend(len.to_le_bytes());
    b
}

/// A pcapng section header block (little-endian, version 1.0, length unknown).
fn section_header() -> Vec<u8> {
    let mut shb = Vec::new();
    shb.extend(0x1a2b_3c4du32.to_le_bytes());
    shb.extend(1u16.to_le_bytes());
    shb.extend(0u16.to_le_bytes());
    shb.extend((-1i64).to_le_bytes());
    block(0x0a0d_0d0a, shb)
}

/// Interfaces: (link type, if_tsresol exponent of 10). Packets: (interface, time, frame).
/// Interface `None` writes a simple packet block.
fn pcapng(interfaces: &[(u16, u8)], packets: &[(Option<u32>, i64, Vec<u8>)]) -> Vec<u8> {
    let mut out = section_header();
    for (linktype, tsresol) in interfaces {
        let mut idb = Vec::new();
        idb.extend(linktype.to_le_bytes());
        idb.extend(0u16.to_le_bytes());
        idb.extend(65_535u32.to_le_bytes());
        idb.extend(9u16.to_le_bytes());
        idb.extend(1u16.to_le_bytes());
        idb.extend([*tsresol, 0, 0, 0]);
        idb.extend(0u32.to_le_bytes());
        out.extend(block(1, idb));
    }
    for (iface, ts, frame) in packets {
        match iface {
            Some(i) => {
                let units =
                    (*ts as i128 * 10i128.pow(interfaces[*i as usize].1 as u32) / S as i128) as u64;
                let mut epb = Vec::new();
                epb.extend(i.to_le_bytes());
                epb.extend(((units >> 32) as u32).to_le_bytes());
                epb.extend((units as u32).to_le_bytes());
                epb.extend((frame.len() as u32).to_le_bytes());
                epb.extend((frame.len() as u32).to_le_bytes());
                epb.extend(frame);
                pad4(&mut epb);
                out.extend(block(6, epb));
            }
            None => {
                let mut spb = Vec::new();
                spb.extend((frame.len() as u32).to_le_bytes());
                spb.extend(frame);
                pad4(&mut spb);
                out.extend(block(3, spb));
            }
        }
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

// ---- writing packets ---------------------------------------------------------

#[derive(Clone, Copy)]
enum Link {
    Ethernet,
    Vlan,
    QinQ,
    Sll,
    Sll2,
    Raw,
    Null,
}

/// A TCP segment from client (`forward`) or server, framed for `link`.
fn tcp(link: Link, forward: bool, flags: &str, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sport, dport) = if forward {
        (CLIENT, SERVER, 40000, 80)
    } else {
        (SERVER, CLIENT, 80, 40000)
    };
    let ip_only = || {
        let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, 1, 1000);
        b = apply_flags(b, flags);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    };
    match link {
        Link::Ethernet | Link::Vlan | Link::QinQ => {
            let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
            let mut v = Vec::new();
            match link {
                Link::Vlan => {
                    let b = eth
                        .single_vlan(VlanId::try_new(10).unwrap())
                        .ipv4(src, dst, 64)
                        .tcp(sport, dport, 1, 1000);
                    apply_flags(b, flags).write(&mut v, payload).unwrap();
                }
                Link::QinQ => {
                    let b = eth
                        .double_vlan(VlanId::try_new(100).unwrap(), VlanId::try_new(10).unwrap())
                        .ipv4(src, dst, 64)
                        .tcp(sport, dport, 1, 1000);
                    apply_flags(b, flags).write(&mut v, payload).unwrap();
                }
                _ => {
                    let b = eth.ipv4(src, dst, 64).tcp(sport, dport, 1, 1000);
                    apply_flags(b, flags).write(&mut v, payload).unwrap();
                }
            }
            v
        }
        Link::Sll => {
            let mut v = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
            v.extend(ip_only());
            v
        }
        Link::Sll2 => {
            let mut v = vec![
                0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
            ];
            v.extend(ip_only());
            v
        }
        Link::Raw => ip_only(),
        Link::Null => {
            let mut v = 2u32.to_le_bytes().to_vec();
            v.extend(ip_only());
            v
        }
    }
}

fn apply_flags(
    b: etherparse::PacketBuilderStep<etherparse::TcpHeader>,
    flags: &str,
) -> etherparse::PacketBuilderStep<etherparse::TcpHeader> {
    nadir_trafficgen::with_tcp_flags(b, flags, 1)
}

/// A whole TCP connection: handshake, a request, a response, FIN teardown.
fn connection(link: Link, t0: i64) -> Vec<(i64, Vec<u8>)> {
    let ms = 1_000_000;
    vec![
        (t0, tcp(link, true, "S", &[])),
        (t0 + 10 * ms, tcp(link, false, "SA", &[])),
        (t0 + 20 * ms, tcp(link, true, "A", &[])),
        (
            t0 + 30 * ms,
            tcp(
                link,
                true,
                "PA",
                b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n",
            ),
        ),
        (t0 + 40 * ms, tcp(link, false, "PA", &[0u8; 500])),
        (t0 + 50 * ms, tcp(link, true, "FA", &[])),
        (t0 + 60 * ms, tcp(link, false, "FA", &[])),
        (t0 + 70 * ms, tcp(link, true, "A", &[])),
    ]
}

/// Meters `bytes` both ways a capture is read (in place, and streamed
/// through a buffer), holds the two to the same flows or the same error,
/// and returns it.
fn flows_from(
    bytes: &[u8],
    config: MeterConfig,
) -> Result<(Vec<FlowRecord>, MeterStats), CaptureError> {
    let in_place = flows_from_capture(bytes, config, |_| {});
    let streamed = flows_from_capture(Source::reader(bytes), config, |_| {});
    match (&in_place, &streamed) {
        (Ok(a), Ok(b)) => assert!(a == b, "in place and streamed differ"),
        (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
        _ => panic!("in place {in_place:?}, streamed {streamed:?}"),
    }
    in_place
}

fn meter(bytes: &[u8]) -> (Vec<FlowRecord>, MeterStats) {
    flows_from(bytes, MeterConfig::default()).unwrap()
}

fn assert_is_the_connection(flows: &[FlowRecord]) {
    assert_eq!(flows.len(), 1, "{flows:#?}");
    let f = &flows[0];
    assert_eq!(f.src, IpAddr::from(CLIENT));
    assert_eq!((f.src_port, f.dst_port, f.protocol), (40000, 80, 6));
    assert_eq!((f.fwd.packets, f.bwd.packets), (5, 3));
    assert_eq!(f.bwd.bytes, 40 + 40 + 540);
    assert!(f.handshake_completed);
    assert_eq!(f.end, EndReason::Fin);
    assert_eq!(f.first_ns, T0);
    assert_eq!(f.last_ns, T0 + 70_000_000);
    assert_eq!(f.fwd.flags[0], 1, "one SYN forward");
    assert_eq!(f.bwd.flags[4], 1, "one FIN backward");
    assert_eq!(f.app.http_host.as_deref(), Some("example.test"));
    assert_eq!(f.app.http_method.as_deref(), Some("GET"));
}

// ---- containers and link types -------------------------------------------

#[test]
fn pcap_in_both_byte_orders_and_resolutions_reads_the_same() {
    for big_endian in [false, true] {
        for nanos in [false, true] {
            let (flows, stats) =
                meter(&pcap(big_endian, nanos, 1, &connection(Link::Ethernet, T0)));
            assert_is_the_connection(&flows);
            assert_eq!(stats.packets, 8);
        }
    }
}

#[test]
fn gzip_compressed_captures_are_read_through() {
    let (flows, _) = meter(&gzip(&pcap(
        false,
        false,
        1,
        &connection(Link::Ethernet, T0),
    )));
    assert_is_the_connection(&flows);
}

#[test]
fn every_link_type_decodes_to_the_same_flow() {
    for (link, linktype) in [
        (Link::Ethernet, 1),
        (Link::Vlan, 1),
        (Link::QinQ, 1),
        (Link::Sll, 113),
        (Link::Sll2, 276),
        (Link::Raw, 101),
        (Link::Raw, 228),
        (Link::Null, 0),
    ] {
        let (flows, stats) = meter(&pcap(false, false, linktype, &connection(link, T0)));
        assert!(
            stats.skipped.is_empty(),
            "link type {linktype}: {:?}",
            stats.skipped
        );
        assert_is_the_connection(&flows);
    }
}

#[test]
fn pcapng_with_two_interfaces_and_simple_packets() {
    // Interface 0: Ethernet, microseconds. Interface 1: raw IP, nanoseconds.
    let eth = connection(Link::Ethernet, T0);
    let raw = connection(Link::Raw, T0 + 3600 * S);
    let mut packets: Vec<(Option<u32>, i64, Vec<u8>)> =
        eth.into_iter().map(|(t, f)| (Some(0), t, f)).collect();
    packets.extend(raw.into_iter().map(|(t, f)| (Some(1), t, f)));
    // A simple packet block (no timestamp) on interface 0.
    packets.push((None, 0, tcp(Link::Ethernet, true, "A", &[])));
    let (flows, stats) = meter(&pcapng(&[(1, 6), (101, 9)], &packets));
    assert_eq!(stats.packets, 17);
    assert_eq!(flows.len(), 2);
    assert_eq!(flows[0].first_ns, T0);
    assert_eq!(flows[1].first_ns, T0 + 3600 * S, "nanosecond interface");
    // The simple packet took the time of the packet before it and joined that flow.
    assert_eq!(flows[1].fwd.packets, 6);
}

#[test]
fn ipv6_and_icmp_echo_pairs_are_flows() {
    let mut frames = Vec::new();
    let v6 = |fwd: bool, flags: &str| {
        let (s, d) = if fwd {
            ([0xfd; 16], [0xfe; 16])
        } else {
            ([0xfe; 16], [0xfd; 16])
        };
        let (sp, dp) = if fwd { (5555, 443) } else { (443, 5555) };
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(s, d, 64)
            .tcp(sp, dp, 1, 100);
        let mut v = Vec::new();
        apply_flags(b, flags).write(&mut v, &[]).unwrap();
        v
    };
    frames.push((T0, v6(true, "S")));
    frames.push((T0 + 1000, v6(false, "SA")));
    let echo = |request: bool| {
        let (s, d) = if request {
            (CLIENT, SERVER)
        } else {
            (SERVER, CLIENT)
        };
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(s, d, 64);
        let b = if request {
            b.icmpv4_echo_request(7, 1)
        } else {
            b.icmpv4_echo_reply(7, 1)
        };
        let mut v = Vec::new();
        b.write(&mut v, &[0; 56]).unwrap();
        v
    };
    frames.push((T0 + 2000, echo(true)));
    frames.push((T0 + 3000, echo(false)));
    let (flows, _) = meter(&pcap(false, false, 1, &frames));
    assert_eq!(flows.len(), 2);
    let v6 = flows.iter().find(|f| f.protocol == 6).unwrap();
    assert_eq!((v6.fwd.packets, v6.bwd.packets, v6.dst_port), (1, 1, 443));
    let icmp = flows.iter().find(|f| f.protocol == 1).unwrap();
    assert_eq!(
        (icmp.fwd.packets, icmp.bwd.packets),
        (1, 1),
        "request and reply are one flow"
    );
    assert_eq!(
        (icmp.src_port, icmp.dst_port),
        (8, 0),
        "echo request type and code"
    );
}

// ---- flow assembly --------------------------------------------------------

#[test]
fn idle_and_active_timeouts_split_flows() {
    let mut frames = connection(Link::Ethernet, T0)[..4].to_vec();
    // 121 s of silence: the idle timeout ends the flow; the next packet starts another.
    frames.push((T0 + 121 * S, tcp(Link::Ethernet, true, "PA", b"x")));
    let (flows, _) = meter(&pcap(false, false, 1, &frames));
    assert_eq!(flows.len(), 2);
    assert_eq!(flows[0].end, EndReason::Idle);

    let frames: Vec<_> = (0..40)
        .map(|i| (T0 + i * 60 * S, tcp(Link::Ethernet, true, "PA", b"x")))
        .collect();
    let (flows, _) = meter(&pcap(false, false, 1, &frames));
    assert_eq!(flows[0].end, EndReason::Active, "cut at 1800 s");
    assert_eq!(flows.len(), 2);
    assert_eq!(flows[0].fwd.packets, 31);
}

#[test]
fn rst_ends_a_flow_and_a_new_syn_after_teardown_starts_one() {
    let mut frames = connection(Link::Ethernet, T0);
    frames.extend(connection(Link::Ethernet, T0 + S)[..2].to_vec());
    frames.push((T0 + S + 20_000_000, tcp(Link::Ethernet, true, "R", &[])));
    let (flows, _) = meter(&pcap(false, false, 1, &frames));
    assert_eq!(flows.len(), 2, "{flows:#?}");
    assert_eq!(flows[0].end, EndReason::Fin);
    assert_eq!(flows[1].end, EndReason::Rst);
    assert!(!flows[1].handshake_completed);
    assert!(flows[1].failed());
}

#[test]
fn ipv4_fragments_count_towards_their_flow() {
    // A 3000-byte UDP datagram in three fragments, by hand: etherparse
    // does not fragment.
    let payload = vec![7u8; 3000];
    let udp = {
        let mut v = Vec::new();
        PacketBuilder::ipv4(CLIENT, SERVER, 64)
            .udp(5000, 6000)
            .write(&mut v, &payload)
            .unwrap();
        v[20..].to_vec() // UDP header and payload
    };
    let mut frames = Vec::new();
    for (i, chunk) in udp.chunks(1480).enumerate() {
        let more = (i + 1) * 1480 < udp.len();
        let mut ip = etherparse::Ipv4Header::new(
            chunk.len() as u16,
            64,
            etherparse::IpNumber::UDP,
            CLIENT,
            SERVER,
        )
        .unwrap();
        ip.identification = 42;
        ip.more_fragments = more;
        ip.fragment_offset = etherparse::IpFragOffset::try_new((i * 1480 / 8) as u16).unwrap();
        ip.header_checksum = ip.calc_header_checksum();
        let mut frame = Vec::new();
        etherparse::Ethernet2Header {
            source: MAC_A,
            destination: MAC_B,
            ether_type: etherparse::EtherType::IPV4,
        }
        .write(&mut frame)
        .unwrap();
        ip.write(&mut frame).unwrap();
        frame.extend(chunk);
        frames.push((T0 + i as i64 * 1000, frame));
    }
    let (flows, stats) = meter(&pcap(false, false, 1, &frames));
    assert!(stats.skipped.is_empty(), "{:?}", stats.skipped);
    assert_eq!(flows.len(), 1);
    assert_eq!((flows[0].src_port, flows[0].dst_port), (5000, 6000));
    assert_eq!(flows[0].fwd.packets, 3, "{stats:?} {flows:#?}");
    assert_eq!(flows[0].fwd.bytes, 3008 + 3 * 20);
}

#[test]
fn host_context_sees_a_scan() {
    let frames: Vec<_> = (0..50u16)
        .map(|port| {
            let mut v = Vec::new();
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv4(CLIENT, SERVER, 64)
                .tcp(40000 + port, 1 + port, 1, 100)
                .syn()
                .write(&mut v, &[])
                .unwrap();
            (T0 + port as i64 * 10_000_000, v)
        })
        .collect();
    let (flows, _) = meter(&pcap(false, false, 1, &frames));
    assert_eq!(flows.len(), 50);
    let last = flows.last().unwrap();
    assert_eq!(last.context.flows, 50);
    assert_eq!(last.context.distinct_dst_ports, 50);
    assert_eq!(last.context.distinct_dst_hosts, 1);
    assert_eq!(last.context.failed_ratio, 1.0);
}

// ---- application names ----------------------------------------------------

#[test]
fn a_dns_tunnel_asks_for_txt_records() {
    let config = nadir_trafficgen::Config {
        hosts: 3,
        duration_s: 30,
        sessions_per_host_minute: 10.0,
        attacks: vec![(nadir_trafficgen::Attack::DnsTunnel, 1)],
        ..Default::default()
    };
    let (mut capture, mut truth) = (Vec::new(), Vec::new());
    nadir_trafficgen::generate(&config, &mut capture, &mut truth).unwrap();
    let (flows, _) = meter(&capture);
    let tunnel: Vec<_> = flows
        .iter()
        .filter(|f| {
            f.app
                .dns_query
                .as_deref()
                .is_some_and(|q| q.ends_with("tunnel-example.net"))
        })
        .collect();
    assert!(tunnel.len() >= 50, "{} tunnel queries", tunnel.len());
    assert!(
        tunnel
            .iter()
            .all(|f| f.app.dns_qtype.as_deref() == Some("TXT"))
    );
}

#[test]
fn dns_names_and_tls_server_names_are_read_from_generated_traffic() {
    let config = nadir_trafficgen::Config {
        hosts: 5,
        duration_s: 30,
        sessions_per_host_minute: 30.0,
        attacks: vec![],
        ..Default::default()
    };
    let (mut capture, mut truth) = (Vec::new(), Vec::new());
    nadir_trafficgen::generate(&config, &mut capture, &mut truth).unwrap();
    let (flows, stats) = meter(&capture);
    assert!(stats.skipped.is_empty());
    let dns: Vec<_> = flows.iter().filter(|f| f.dst_port == 53).collect();
    assert!(!dns.is_empty());
    assert!(
        dns.iter().all(|f| f
            .app
            .dns_query
            .as_deref()
            .is_some_and(|q| q.ends_with(".example.com")
                || q.ends_with(".example.org")
                || q.ends_with(".example.net")
                || q.ends_with(".example.io")))
    );
    assert!(
        dns.iter()
            .all(|f| f.app.dns_rcode.as_deref() == Some("NOERROR"))
    );
    assert!(dns.iter().all(|f| f.app.dns_qtype.as_deref() == Some("A")));
    let tls: Vec<_> = flows.iter().filter(|f| f.dst_port == 443).collect();
    assert!(!tls.is_empty());
    assert!(
        tls.iter().all(|f| f.app.tls_sni.is_some()),
        "every HTTPS flow names its server"
    );
    // A TLS flow's server name is the name its DNS lookup asked for.
    let names: std::collections::HashSet<_> =
        dns.iter().filter_map(|f| f.app.dns_query.clone()).collect();
    assert!(
        tls.iter()
            .all(|f| names.contains(f.app.tls_sni.as_ref().unwrap()))
    );
}

// ---- broken input -----------------------------------------------------------

#[test]
fn empty_and_non_capture_input_is_a_clear_error() {
    assert!(matches!(
        flows_from(&b""[..], MeterConfig::default()),
        Err(CaptureError::Empty)
    ));
    let err = flows_from(&b"hello, world\n"[..], MeterConfig::default()).unwrap_err();
    assert!(err.to_string().contains("68 65 6c 6c"), "{err}");
}

#[test]
fn a_header_only_capture_has_no_flows() {
    let (flows, stats) = meter(&pcap(false, false, 1, &[]));
    assert!(flows.is_empty());
    assert_eq!(stats.packets, 0);
}

#[test]
fn a_truncated_last_packet_keeps_the_flows_before_it() {
    let mut bytes = pcap(false, false, 1, &connection(Link::Ethernet, T0));
    bytes.truncate(bytes.len() - 10);
    let (flows, stats) = meter(&bytes);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].fwd.packets + flows[0].bwd.packets, 7);
    assert_eq!(stats.skipped.get("truncated last record"), Some(&1));
}

#[test]
fn a_snaplen_shorter_than_the_packet_still_counts_its_real_size() {
    let mut frames = connection(Link::Ethernet, T0);
    // Cut the 500-byte response to its headers, as a 64-byte snaplen would.
    frames[4].1.truncate(64);
    let (flows, stats) = meter(&pcap(false, false, 1, &frames));
    assert!(stats.skipped.is_empty(), "{:?}", stats.skipped);
    assert_eq!(
        flows[0].bwd.bytes,
        40 + 40 + 540,
        "sizes come from the IP header"
    );
}

#[test]
fn out_of_order_timestamps_are_counted_not_fatal() {
    let mut frames = connection(Link::Ethernet, T0);
    frames.swap(3, 4);
    let (flows, stats) = meter(&pcap(false, false, 1, &frames));
    assert_eq!(flows.len(), 1);
    assert_eq!(stats.out_of_order, 1);
    assert!(flows[0].fwd.iat.min >= 0.0);
}

#[test]
fn non_ip_frames_are_skipped_by_reason() {
    let arp = {
        let mut v = Vec::new();
        v.extend(MAC_B);
        v.extend(MAC_A);
        v.extend([0x08, 0x06]);
        v.extend([0, 1, 8, 0, 6, 4, 0, 1]);
        v.extend(MAC_A);
        v.extend(CLIENT);
        v.extend([0; 6]);
        v.extend(SERVER);
        v
    };
    let mut frames = connection(Link::Ethernet, T0);
    frames.insert(0, (T0 - 1000, arp));
    let (flows, stats) = meter(&pcap(false, false, 1, &frames));
    assert_is_the_connection(&flows);
    assert_eq!(
        stats.skipped.values().sum::<u64>(),
        1,
        "{:?}",
        stats.skipped
    );
    let (_, stats) = meter(&pcap(false, false, 105, &connection(Link::Ethernet, T0)));
    assert_eq!(stats.skipped.get("unsupported link type"), Some(&8));
}

#[test]
fn a_corrupt_block_names_its_byte_offset() {
    let mut bytes = pcapng(
        &[(1, 6)],
        &[(Some(0), T0, tcp(Link::Ethernet, true, "S", &[]))],
    );
    let good = bytes.len();
    // A block whose two length fields disagree.
    bytes.extend(6u32.to_le_bytes());
    bytes.extend(32u32.to_le_bytes());
    bytes.extend([0u8; 20]);
    bytes.extend(99u32.to_le_bytes());
    match flows_from(&bytes[..], MeterConfig::default()) {
        Err(CaptureError::Corrupt { offset, .. }) => assert_eq!(offset, good as u64),
        other => panic!("expected a corrupt-block error, got {other:?}"),
    }
}

#[test]
fn corrupt_blocks_are_described_in_words_not_the_parsers_terms() {
    let mut bytes = pcapng(
        &[(1, 6)],
        &[(Some(0), T0, tcp(Link::Ethernet, true, "S", &[]))],
    );
    bytes.extend(6u32.to_le_bytes());
    bytes.extend(32u32.to_le_bytes());
    bytes.extend([0u8; 20]);
    bytes.extend(99u32.to_le_bytes());
    let err = flows_from(&bytes[..], MeterConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("an enhanced packet block has inconsistent lengths"),
        "{err}"
    );
    assert!(!err.contains("Verify") && !err.contains("Nom"), "{err}");
}

#[test]
fn a_capture_cut_inside_its_file_header_says_so() {
    let whole = pcap(false, false, 1, &connection(Link::Ethernet, T0));
    for cut in [3, 10, 23] {
        let err = flows_from(&whole[..cut], MeterConfig::default()).unwrap_err();
        assert!(
            matches!(err, CaptureError::TruncatedHeader { bytes, needed: 24, .. } if bytes == cut),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with(&format!(
                "the capture ends inside its file header ({cut} bytes"
            )),
            "{err}"
        );
    }
    let ng = pcapng(&[(1, 6)], &[]);
    for cut in [6, 20] {
        let err = flows_from(&ng[..cut], MeterConfig::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "the capture ends inside its file header ({cut} bytes"
            )) && err.contains("pcapng section header block"),
            "{err}"
        );
    }
    // Through gzip the same.
    let err = flows_from(&gzip(&whole[..10])[..], MeterConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ends inside its file header (10 bytes"),
        "{err}"
    );
    assert!(matches!(
        flows_from(&b""[..], MeterConfig::default()),
        Err(CaptureError::Empty)
    ));
}

/// A pcapng capture of one interface with `if_tsresol` and `if_tsoffset`
/// options, and enhanced packets given in the interface's raw units.
fn pcapng_raw(tsresol: u8, tsoffset: Option<i64>, packets: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = section_header();
    let mut idb = Vec::new();
    idb.extend(1u16.to_le_bytes());
    idb.extend(0u16.to_le_bytes());
    idb.extend(65_535u32.to_le_bytes());
    idb.extend(9u16.to_le_bytes());
    idb.extend(1u16.to_le_bytes());
    idb.extend([tsresol, 0, 0, 0]);
    if let Some(offset) = tsoffset {
        idb.extend(14u16.to_le_bytes());
        idb.extend(8u16.to_le_bytes());
        idb.extend(offset.to_le_bytes());
    }
    idb.extend(0u32.to_le_bytes());
    out.extend(block(1, idb));
    for (units, frame) in packets {
        let mut epb = Vec::new();
        epb.extend(0u32.to_le_bytes());
        epb.extend(((units >> 32) as u32).to_le_bytes());
        epb.extend((*units as u32).to_le_bytes());
        epb.extend((frame.len() as u32).to_le_bytes());
        epb.extend((frame.len() as u32).to_le_bytes());
        epb.extend(frame);
        pad4(&mut epb);
        out.extend(block(6, epb));
    }
    out
}

#[test]
fn crafted_pcapng_timestamps_are_errors_or_skipped_and_never_overflow() {
    let syn = || tcp(Link::Ethernet, true, "S", &[]);
    let us = (T0 / 1000) as u64;
    // An offset of i64::MAX seconds: no packet of the interface has a time.
    let err = flows_from(
        &pcapng_raw(6, Some(i64::MAX), &[(us, syn())])[..],
        MeterConfig::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("pcapng interface 0") && err.contains("if_tsoffset 9223372036854775807"),
        "{err}"
    );
    // 2^127 units per second: no clock.
    let err = flows_from(
        &pcapng_raw(255, None, &[(us, syn())])[..],
        MeterConfig::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("if_tsresol 255"), "{err}");
    // Nanoseconds with the largest count, seconds past 2262, or an offset
    // that the count carries past 2262: those packets are skipped and
    // counted, the others kept.
    for (tsresol, offset, bad, good, first_ns) in [
        (9, None, u64::MAX, T0 as u64, T0),
        (0, None, u64::MAX, (T0 / S) as u64, T0),
        (
            6,
            Some(9_000_000_000),
            300_000_000_000_000,
            0,
            9_000_000_000 * S,
        ),
    ] {
        let (flows, stats) = flows_from(
            &pcapng_raw(tsresol, offset, &[(bad, syn()), (good, syn())])[..],
            MeterConfig::default(),
        )
        .unwrap();
        assert_eq!(flows.len(), 1, "{tsresol} {offset:?}");
        assert_eq!(flows[0].first_ns, first_ns);
        assert_eq!(stats.packets, 2);
        assert_eq!(
            stats.skipped.get(nadir_flowmeter::UNREPRESENTABLE),
            Some(&1),
            "{:?}",
            stats.skipped
        );
    }
    // A power-of-two resolution is a resolution: 2^20 units per second.
    let units = ((T0 as i128 * (1 << 20)) / S as i128) as u64;
    let (flows, _) = flows_from(
        &pcapng_raw(0x80 | 20, None, &[(units, syn())])[..],
        MeterConfig::default(),
    )
    .unwrap();
    assert!(
        (flows[0].first_ns - T0).abs() < 1000,
        "{}",
        flows[0].first_ns
    );
}

/// Fails with a connection reset once `after` bytes were read.
struct Resetting<'a> {
    bytes: &'a [u8],
    after: usize,
}

impl std::io::Read for Resetting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.after == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            ));
        }
        let n = buf.len().min(self.after).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        self.after -= n;
        Ok(n)
    }
}

fn many_packets(n: usize) -> Vec<u8> {
    let frames: Vec<(i64, Vec<u8>)> = (0..n)
        .map(|i| (T0 + i as i64 * 1000, tcp(Link::Ethernet, true, "A", &[])))
        .collect();
    pcap(false, false, 1, &frames)
}

#[test]
fn gzip_captures_are_bounded_and_their_faults_named() {
    let capture = many_packets(60_000);
    let packed = gzip(&capture);
    // (How well it compresses depends on the gzip backend the build links.)
    let ratio = (capture.len() / packed.len()) as u64;
    assert!(capture.len() > 2 << 20 && ratio >= 4, "{ratio}");
    // Half its real ratio allowed: refused, with the setting named.
    let small = MeterConfig {
        max_gzip_ratio: ratio / 2,
        ..MeterConfig::default()
    };
    let err = flows_from(&packed[..], small).unwrap_err();
    assert!(
        matches!(err, CaptureError::GzipBomb { ratio: r, .. } if r == ratio / 2),
        "{err:?}"
    );
    assert!(err.to_string().contains("NADIR_MAX_GZIP_RATIO"), "{err}");
    // Within the ratio it is read.
    let (_, stats) = flows_from(&packed[..], MeterConfig::default()).unwrap();
    assert_eq!(stats.packets, 60_000);
    // Cut short: the gzip stream says it is truncated.
    let err = flows_from(&packed[..packed.len() / 2], MeterConfig::default()).unwrap_err();
    assert!(
        matches!(&err, CaptureError::Gzip { reason, .. } if reason.contains("truncated")),
        "{err:?}"
    );
    assert!(!err.to_string().contains("ReadError"), "{err}");
    // A source that fails is a read error with its cause, plain or gzip.
    for bytes in [&capture, &packed] {
        let source = Resetting {
            bytes,
            after: bytes.len() / 2,
        };
        let err =
            flows_from_capture(Source::reader(source), MeterConfig::default(), |_| {}).unwrap_err();
        assert!(err.is_read(), "{err:?}");
        assert!(
            err.to_string().contains("connection reset by peer"),
            "{err}"
        );
    }
}

#[test]
fn mutated_captures_never_panic() {
    use rand::{RngExt, SeedableRng};
    let config = nadir_trafficgen::Config {
        hosts: 4,
        duration_s: 10,
        sessions_per_host_minute: 60.0,
        ..Default::default()
    };
    let (mut generated, mut truth) = (Vec::new(), Vec::new());
    nadir_trafficgen::generate(&config, &mut generated, &mut truth).unwrap();
    generated.truncate(200_000);
    let ng = pcapng(
        &[(1, 6), (113, 9)],
        &connection(Link::Ethernet, T0)
            .into_iter()
            .map(|(t, f)| (Some(0), t, f))
            .collect::<Vec<_>>(),
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for round in 0..400 {
        let mut bytes = if round % 2 == 0 {
            generated.clone()
        } else {
            ng.clone()
        };
        for _ in 0..rng.random_range(1..20) {
            let at = rng.random_range(0..bytes.len());
            match rng.random_range(0..4) {
                0 => bytes[at] = rng.random(),
                1 => bytes[at] ^= 0x80,
                2 => bytes.truncate(at.max(1)),
                _ => {
                    let junk: Vec<u8> =
                        (0..rng.random_range(1..64)).map(|_| rng.random()).collect();
                    bytes.splice(at..at, junk);
                }
            }
        }
        // Ok or a clear error; a panic fails the test.
        let _ = flows_from(&bytes[..], MeterConfig::default());
    }
}

#[test]
fn streamed_flows_come_out_in_order_with_the_same_context_as_a_sorted_batch() {
    let config = nadir_trafficgen::Config {
        hosts: 10,
        duration_s: 120,
        sessions_per_host_minute: 20.0,
        ..Default::default()
    };
    let (mut capture, mut truth) = (Vec::new(), Vec::new());
    nadir_trafficgen::generate(&config, &mut capture, &mut truth).unwrap();
    let mut streamed = Vec::new();
    nadir_flowmeter::stream_flows(
        &capture[..],
        MeterConfig::default(),
        |_| {},
        |f| streamed.push(f),
    )
    .unwrap();
    // The same flows, sorted and given their context all at once.
    let mut batch = streamed.clone();
    nadir_flowmeter::record::sort_flows(&mut batch);
    nadir_flowmeter::context::add_host_context(
        &mut batch,
        MeterConfig::default().context_window_ns,
    );
    assert_eq!(streamed, batch);
    assert!(streamed.len() > 1000);
}

#[test]
fn the_meter_holds_open_flows_not_the_capture() {
    use nadir_flowmeter::{CaptureReader, FlowMeter};
    // Ten minutes of traffic; with a 60 s active timeout no flow stays open
    // longer, so finished flows are handed out all along: what the meter
    // holds spans one active timeout, whatever the capture's length.
    let config = nadir_trafficgen::Config {
        hosts: 10,
        duration_s: 600,
        sessions_per_host_minute: 10.0,
        attacks: vec![],
        ..Default::default()
    };
    let (mut capture, mut truth) = (Vec::new(), Vec::new());
    nadir_trafficgen::generate(&config, &mut capture, &mut truth).unwrap();
    let mut reader = CaptureReader::new(&capture[..]).unwrap();
    let mut meter = FlowMeter::new(MeterConfig {
        idle_timeout_ns: 30 * S,
        active_timeout_ns: 60 * S,
        ..MeterConfig::default()
    });
    let (mut out, mut most_open) = (Vec::new(), 0);
    while reader
        .next_packet(|frame| meter.observe(&frame))
        .unwrap()
        .is_some()
    {
        meter.drain_finished(&mut out);
        most_open = most_open.max(meter.active_flows());
    }
    let handed_out_early = out.len();
    meter.finish(&mut out);
    assert!(out.len() > 1000, "{}", out.len());
    assert!(
        most_open * 5 < out.len(),
        "at most {most_open} open of {} flows",
        out.len()
    );
    assert!(
        handed_out_early * 10 > out.len() * 8,
        "{handed_out_early} of {} handed out before the end",
        out.len()
    );
}

#[test]
fn a_packet_dated_2106_neither_pins_the_clock_nor_keeps_every_flow_open() {
    let mut frames = vec![
        (T0, udp_from(1000)),
        // The last second pcap's 32-bit seconds can hold.
        (Y2106, udp_from(1001)),
    ];
    frames.extend((0..2000).map(|i| (T0 + (i + 1) * S, udp_from(2000 + i as u16))));
    let (flows, stats) = meter(&pcap(false, false, 1, &frames));
    assert_eq!(flows.len(), 2001, "the bogus packet starts no flow");
    assert_eq!(
        stats.skipped["timestamp far after the packets before it (max_clock_jump)"],
        1
    );
    // The clock kept moving: flows idle for 120 s expired while the
    // capture was read, rather than all staying open to its end.
    let idle = flows.iter().filter(|f| f.end == EndReason::Idle).count();
    assert!(idle > 1800, "{idle} of 2001 expired");

    // A bogus first packet: the clock moves back to the real ones.
    let mut frames = vec![(Y2106, udp_from(1001))];
    frames.extend((0..500).map(|i| (T0 + i * S, udp_from(2000 + i as u16))));
    let (flows, stats) = meter(&pcap(false, false, 1, &frames));
    assert_eq!(stats.clock_resets, 1);
    assert!(flows.iter().filter(|f| f.end == EndReason::Idle).count() > 300);
}

#[test]
fn at_the_open_flow_limit_the_oldest_flow_is_evicted_and_counted() {
    let frames: Vec<_> = (0..1000)
        .map(|i| (T0 + i * 1_000, udp_from(1000 + i as u16)))
        .collect();
    let config = MeterConfig {
        max_open_flows: 100,
        ..MeterConfig::default()
    };
    let (flows, stats) = flows_from(&pcap(false, false, 1, &frames)[..], config).unwrap();
    assert_eq!(flows.len(), 1000, "every flow is still exported");
    assert_eq!(stats.evicted, 900);
    let evicted: Vec<u16> = flows
        .iter()
        .filter(|f| f.end == EndReason::Evicted)
        .map(|f| f.src_port)
        .collect();
    assert_eq!(evicted.len(), 900);
    assert_eq!(evicted[0], 1000, "the oldest goes first");
}
