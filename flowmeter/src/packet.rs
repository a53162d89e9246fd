//! One captured frame decoded down to what flow assembly needs: addresses,
//! protocol, ports (or ICMP type and code), TCP flags, sizes, and the start
//! of the transport payload for application names.
//!
//! Parsing is etherparse's. The common frame (IPv4 without fragmentation or
//! IPv6 without extension headers, carrying a whole TCP or UDP header,
//! untagged Ethernet, cooked or raw) is read straight from etherparse's
//! header slices; every other frame goes through its lax mode, so a frame
//! cut by the snaplen still yields its headers. Both paths give the same
//! packet for the frames the first one takes (a test holds them to it).
//! Link types: Ethernet (with 802.1Q/QinQ tags), Linux cooked capture v1
//! and v2, raw IPv4/IPv6, BSD loopback/null.

use std::net::IpAddr;

use etherparse::{
    EtherType, Ipv4HeaderSlice, Ipv6HeaderSlice, LaxNetSlice, LaxSlicedPacket, TcpHeaderSlice,
    TransportSlice,
};

/// libpcap link types this decoder reads.
pub mod linktype {
    pub const NULL: i32 = 0;
    pub const ETHERNET: i32 = 1;
    pub const RAW: i32 = 101;
    pub const LOOP: i32 = 108;
    pub const LINUX_SLL: i32 = 113;
    pub const IPV4: i32 = 228;
    pub const IPV6: i32 = 229;
    pub const LINUX_SLL2: i32 = 276;
}

/// Why a frame does not count towards any flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    UnsupportedLinkType,
    NotIp,
    Malformed,
}

impl Skip {
    pub fn reason(self) -> &'static str {
        match self {
            Skip::UnsupportedLinkType => "unsupported link type",
            Skip::NotIp => "not IP (ARP, STP, ...)",
            Skip::Malformed => "malformed or truncated headers",
        }
    }
}

/// Transport-level identity of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP or ICMPv6: type and code.
    Icmp {
        kind: u8,
        code: u8,
    },
    /// Any other IP protocol, or a non-first fragment (see `fragment`).
    Other,
}

/// TCP flag bits, as in the header.
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// IPv4/IPv6 fragmentation facts of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// IP identification (IPv4) or fragment header identification (IPv6).
    pub id: u32,
    /// Whether this fragment carries the transport header (offset 0).
    pub first: bool,
}

/// A decoded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub ts_ns: i64,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).
    pub protocol: u8,
    pub transport: Transport,
    /// Length of the IP packet (header and payload) from its header.
    pub ip_len: u32,
    pub fragment: Option<Fragment>,
    /// The transport payload as captured (possibly cut by the snaplen).
    pub payload: &'a [u8],
}

/// Decodes a frame of the given link type.
pub fn decode(ts_ns: i64, linktype: i32, data: &[u8]) -> Result<Packet<'_>, Skip> {
    match decode_common(ts_ns, linktype, data) {
        Some(packet) => Ok(packet),
        None => decode_lax(ts_ns, linktype, data),
    }
}

/// The common frame, decoded without building etherparse's whole lax
/// view of it; `None` for every frame that needs the lax path.
#[inline]
fn decode_common(ts_ns: i64, linktype: i32, data: &[u8]) -> Option<Packet<'_>> {
    let (ether_type, ip) = match linktype {
        linktype::ETHERNET => (
            Some(u16::from_be_bytes([*data.get(12)?, *data.get(13)?])),
            data.get(14..)?,
        ),
        linktype::LINUX_SLL => (
            Some(u16::from_be_bytes([*data.get(14)?, *data.get(15)?])),
            data.get(16..)?,
        ),
        linktype::LINUX_SLL2 => (
            Some(u16::from_be_bytes([*data.first()?, *data.get(1)?])),
            data.get(20..)?,
        ),
        linktype::RAW | linktype::IPV4 | linktype::IPV6 => (None, data),
        _ => return None,
    };
    let version = ip.first()? >> 4;
    let (src, dst, ip_len, protocol, ip_payload) = match (ether_type, version) {
        (None | Some(0x0800), 4) => {
            let h = Ipv4HeaderSlice::from_slice(ip).ok()?;
            if h.is_fragmenting_payload() {
                return None;
            }
            let header_len = h.slice().len();
            let total_len = usize::from(h.total_len());
            // As the lax path: a total length outside the header and the
            // frame falls back to the frame's end.
            let end = if total_len < header_len || total_len > ip.len() {
                ip.len()
            } else {
                total_len
            };
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                u32::from(h.total_len()),
                h.protocol().0,
                &ip[header_len..end],
            )
        }
        (None | Some(0x86dd), 6) => {
            let h = Ipv6HeaderSlice::from_slice(ip).ok()?;
            let payload_len = usize::from(h.payload_length());
            // A zero payload length (a jumbogram) and a frame cut short
            // both take the frame's end, as the lax path does.
            let end = if payload_len == 0 || 40 + payload_len > ip.len() {
                ip.len()
            } else {
                40 + payload_len
            };
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                40 + u32::from(h.payload_length()),
                h.next_header().0,
                &ip[40..end],
            )
        }
        _ => return None,
    };
    let (transport, payload) = match protocol {
        6 => {
            let tcp = TcpHeaderSlice::from_slice(ip_payload).ok()?;
            let flags = ip_payload[13];
            (
                Transport::Tcp {
                    sport: tcp.source_port(),
                    dport: tcp.destination_port(),
                    flags,
                },
                &ip_payload[tcp.slice().len()..],
            )
        }
        17 => {
            let header = ip_payload.get(..8)?;
            let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
            // As etherparse's lax UDP: a length outside the header and the
            // packet falls back to the packet's end.
            let end = if length < 8 || length > ip_payload.len() {
                ip_payload.len()
            } else {
                length
            };
            (
                Transport::Udp {
                    sport: u16::from_be_bytes([header[0], header[1]]),
                    dport: u16::from_be_bytes([header[2], header[3]]),
                },
                &ip_payload[8..end],
            )
        }
        _ => return None,
    };
    Some(Packet {
        ts_ns,
        src,
        dst,
        protocol,
        transport,
        ip_len,
        fragment: None,
        payload,
    })
}

/// Any frame, through etherparse's lax view of it.
fn decode_lax(ts_ns: i64, linktype: i32, data: &[u8]) -> Result<Packet<'_>, Skip> {
    let sliced = match linktype {
        linktype::ETHERNET => LaxSlicedPacket::from_ethernet(data).map_err(|_| Skip::Malformed)?,
        linktype::RAW | linktype::IPV4 | linktype::IPV6 => {
            LaxSlicedPacket::from_ip(data).map_err(|_| Skip::Malformed)?
        }
        linktype::NULL | linktype::LOOP => {
            // Four bytes of address family, in the capturing host's byte
            // order (NULL) or network order (LOOP): 2 is IPv4, 24/28/30 IPv6.
            let family = data.get(..4).ok_or(Skip::Malformed)?;
            let le = u32::from_le_bytes(family.try_into().unwrap());
            let be = u32::from_be_bytes(family.try_into().unwrap());
            let family = if le < 256 { le } else { be };
            if !matches!(family, 2 | 24 | 28 | 30) {
                return Err(Skip::NotIp);
            }
            LaxSlicedPacket::from_ip(&data[4..]).map_err(|_| Skip::Malformed)?
        }
        linktype::LINUX_SLL => {
            // 16-byte header; the protocol type is its last two bytes.
            let header = data.get(..16).ok_or(Skip::Malformed)?;
            let ether_type = EtherType(u16::from_be_bytes([header[14], header[15]]));
            LaxSlicedPacket::from_ether_type(ether_type, &data[16..])
        }
        linktype::LINUX_SLL2 => {
            // 20-byte header; the protocol type is its first two bytes.
            let header = data.get(..20).ok_or(Skip::Malformed)?;
            let ether_type = EtherType(u16::from_be_bytes([header[0], header[1]]));
            LaxSlicedPacket::from_ether_type(ether_type, &data[20..])
        }
        _ => return Err(Skip::UnsupportedLinkType),
    };
    let net = sliced.net.as_ref().ok_or(match sliced.stop_err {
        Some(_) => Skip::Malformed,
        None => Skip::NotIp,
    })?;
    let (src, dst, ip_len, payload_info, fragment) = match net {
        LaxNetSlice::Ipv4(ip) => {
            let h = ip.header();
            let fragment = ip.is_payload_fragmented().then(|| Fragment {
                id: h.identification() as u32,
                first: h.fragments_offset().value() == 0,
            });
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                h.total_len() as u32,
                ip.payload(),
                fragment,
            )
        }
        LaxNetSlice::Ipv6(ip) => {
            let h = ip.header();
            let fragment = ip.is_payload_fragmented().then(|| {
                let header = ip
                    .extensions()
                    .clone()
                    .into_iter()
                    .find_map(|ext| match ext {
                        etherparse::Ipv6ExtensionSlice::Fragment(f) => Some(f),
                        _ => None,
                    });
                match header {
                    Some(f) => Fragment {
                        id: f.identification(),
                        first: f.fragment_offset().value() == 0,
                    },
                    None => Fragment { id: 0, first: true },
                }
            });
            (
                IpAddr::from(h.source_addr()),
                IpAddr::from(h.destination_addr()),
                40 + h.payload_length() as u32,
                ip.payload(),
                fragment,
            )
        }
        LaxNetSlice::Arp(_) => return Err(Skip::NotIp),
    };
    let protocol = payload_info.ip_number.0;
    let (transport, payload) = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let flags = (tcp.fin() as u8)
                | (tcp.syn() as u8) << 1
                | (tcp.rst() as u8) << 2
                | (tcp.psh() as u8) << 3
                | (tcp.ack() as u8) << 4
                | (tcp.urg() as u8) << 5
                | (tcp.ece() as u8) << 6
                | (tcp.cwr() as u8) << 7;
            (
                Transport::Tcp {
                    sport: tcp.source_port(),
                    dport: tcp.destination_port(),
                    flags,
                },
                tcp.payload(),
            )
        }
        Some(TransportSlice::Udp(udp)) => (
            Transport::Udp {
                sport: udp.source_port(),
                dport: udp.destination_port(),
            },
            udp.payload(),
        ),
        Some(TransportSlice::Icmpv4(icmp)) => (
            Transport::Icmp {
                kind: icmp.type_u8(),
                code: icmp.code_u8(),
            },
            &[][..],
        ),
        Some(TransportSlice::Icmpv6(icmp)) => (
            Transport::Icmp {
                kind: icmp.type_u8(),
                code: icmp.code_u8(),
            },
            &[][..],
        ),
        _ => {
            // No transport header: another protocol, a non-first fragment,
            // or a transport header cut by the snaplen. ICMP cut short still
            // has its type and code in the first two payload bytes.
            let p = payload_info.payload;
            let is_first = fragment.is_none_or(|f| f.first);
            match protocol {
                1 | 58 if is_first && p.len() >= 2 => (
                    Transport::Icmp {
                        kind: p[0],
                        code: p[1],
                    },
                    &[][..],
                ),
                6 if is_first && p.len() >= 14 => (
                    Transport::Tcp {
                        sport: u16::from_be_bytes([p[0], p[1]]),
                        dport: u16::from_be_bytes([p[2], p[3]]),
                        flags: p[13],
                    },
                    &[][..],
                ),
                6 | 17 if is_first && p.len() >= 4 => {
                    let (sport, dport) = (
                        u16::from_be_bytes([p[0], p[1]]),
                        u16::from_be_bytes([p[2], p[3]]),
                    );
                    if protocol == 17 {
                        (Transport::Udp { sport, dport }, &[][..])
                    } else {
                        (
                            Transport::Tcp {
                                sport,
                                dport,
                                flags: 0,
                            },
                            &[][..],
                        )
                    }
                }
                _ => (Transport::Other, &[][..]),
            }
        }
    };
    Ok(Packet {
        ts_ns,
        src,
        dst,
        protocol,
        transport,
        ip_len,
        fragment,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use rand::{RngExt, SeedableRng};

    /// Frames of every shape the common path takes, and some it does not.
    fn frames() -> Vec<(i32, Vec<u8>)> {
        let mac = ([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]);
        let v4 = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let v6 = ([0x20; 16], [0x21; 16]);
        let payload = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n";
        let mut out = Vec::new();
        let ip_frames = (0..4).map(|kind| {
            let builder = match kind {
                0 | 1 => PacketBuilder::ip(etherparse::IpHeaders::Ipv4(
                    etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::TCP, v4.0, v4.1)
                        .unwrap(),
                    Default::default(),
                )),
                _ => PacketBuilder::ipv6(v6.0, v6.1, 64),
            };
            let mut frame = Vec::new();
            if kind % 2 == 0 {
                let tcp = builder.tcp(40000, 80, 7, 1024).syn().ack(3).psh();
                tcp.write(&mut frame, payload).unwrap();
            } else {
                builder.udp(5353, 53).write(&mut frame, payload).unwrap();
            }
            frame
        });
        for ip in ip_frames {
            let ether_type: [u8; 2] = if ip[0] >> 4 == 4 {
                [8, 0]
            } else {
                [0x86, 0xdd]
            };
            out.push((linktype::RAW, ip.clone()));
            out.push((linktype::IPV4, ip.clone()));
            let mut ethernet = [&mac.0[..], &mac.1[..], &ether_type[..]].concat();
            ethernet.extend(&ip);
            // Ethernet padding after a short packet.
            let mut padded = ethernet.clone();
            padded.extend([0; 12]);
            out.push((linktype::ETHERNET, ethernet));
            out.push((linktype::ETHERNET, padded));
            let mut vlan = [&mac.0[..], &mac.1[..], &[0x81, 0, 0, 7], &ether_type[..]].concat();
            vlan.extend(&ip);
            out.push((linktype::ETHERNET, vlan));
            let mut sll = vec![0; 14];
            sll.extend(ether_type);
            sll.extend(&ip);
            out.push((linktype::LINUX_SLL, sll));
            let mut sll2 = ether_type.to_vec();
            sll2.extend([0; 18]);
            sll2.extend(&ip);
            out.push((linktype::LINUX_SLL2, sll2));
        }
        out
    }

    #[test]
    fn the_common_path_decodes_as_the_lax_path_whatever_the_bytes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        let (mut common, mut tried) = (0, 0);
        for (linktype, frame) in frames() {
            for round in 0..3000 {
                let mut data = frame.clone();
                if round > 0 {
                    for _ in 0..rng.random_range(1..4) {
                        match rng.random_range(0..3) {
                            0 => data.truncate(rng.random_range(0..=data.len())),
                            _ if data.is_empty() => {}
                            1 => {
                                // A byte in the headers, where the lengths are.
                                let at = rng.random_range(0..data.len().min(80));
                                data[at] = rng.random();
                            }
                            _ => {
                                let at = rng.random_range(0..data.len());
                                data[at] = rng.random();
                            }
                        }
                    }
                }
                tried += 1;
                if let Some(packet) = decode_common(7, linktype, &data) {
                    common += 1;
                    assert_eq!(
                        Ok(packet),
                        decode_lax(7, linktype, &data),
                        "link type {linktype}, frame {data:02x?}"
                    );
                }
            }
        }
        // Most frames, mutated or not, still take the common path.
        assert!(
            common * 3 > tried,
            "{common} of {tried} frames on the common path"
        );
    }
}
