//! One captured frame decoded down to what flow assembly needs: addresses,
//! protocol, ports (or ICMP type and code), TCP flags, sizes, and the start
//! of the transport payload for application names.
//!
//! Parsing is etherparse's, in its lax mode, so a frame cut by the snaplen
//! still yields its headers. Link types: Ethernet (with 802.1Q/QinQ tags),
//! Linux cooked capture v1 and v2, raw IPv4/IPv6, BSD loopback/null.

use std::net::IpAddr;

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};

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
#[derive(Debug, Clone, Copy)]
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
