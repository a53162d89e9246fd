//! Captures built byte by byte, for tests that need a capture of an exact
//! shape (timestamps far off, many flows, a file cut short) rather than
//! realistic traffic.

/// A classic pcap (raw IPv4 link type) of one-packet UDP flows from
/// 10.0.0.1 to 10.0.0.2:53, one per `(seconds, source port)`.
pub fn udp_pcap(packets: &[(u32, u16)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend([0u8; 8]);
    out.extend(65535u32.to_le_bytes());
    out.extend(228u32.to_le_bytes()); // LINKTYPE_IPV4
    for &(seconds, port) in packets {
        let mut ip = vec![
            0x45, 0, 0, 29, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip.extend(port.to_be_bytes());
        ip.extend(53u16.to_be_bytes());
        ip.extend(9u16.to_be_bytes());
        ip.extend([0, 0, b'q']);
        out.extend(seconds.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((ip.len() as u32).to_le_bytes());
        out.extend((ip.len() as u32).to_le_bytes());
        out.extend(ip);
    }
    out
}
