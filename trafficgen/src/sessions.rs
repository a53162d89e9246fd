//! The sessions the generator plays: who talks to whom, how, and when.

use std::net::Ipv4Addr;

use etherparse::PacketBuilder;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::{Config, Emitter};

/// The attacks the generator can mix in; their names are the labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attack {
    SynScan,
    ConnectScan,
    SynFlood,
    SshBruteForce,
    DnsTunnel,
    Beaconing,
    SlowExfiltration,
}

impl Attack {
    pub const ALL: [Attack; 7] = [
        Attack::SynScan,
        Attack::ConnectScan,
        Attack::SynFlood,
        Attack::SshBruteForce,
        Attack::DnsTunnel,
        Attack::Beaconing,
        Attack::SlowExfiltration,
    ];

    /// The label its flows carry in the ground truth.
    pub fn label(self) -> &'static str {
        match self {
            Attack::SynScan => "syn_scan",
            Attack::ConnectScan => "connect_scan",
            Attack::SynFlood => "syn_flood",
            Attack::SshBruteForce => "ssh_bruteforce",
            Attack::DnsTunnel => "dns_tunnel",
            Attack::Beaconing => "c2_beacon",
            Attack::SlowExfiltration => "exfiltration",
        }
    }

    pub fn parse(name: &str) -> Option<Attack> {
        Attack::ALL.into_iter().find(|a| a.label() == name)
    }
}

const MS: u64 = 1_000_000;
const TCP: u8 = 6;
const UDP: u8 = 17;

const DNS_SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 53);
const INTRANET: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 80);
const SSH_SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 22);
const NTP_SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 123);
const FILE_SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 45);
const ATTACKER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);
const C2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 200);

pub(crate) const SITES: [&str; 12] = [
    "www.example.com",
    "mail.example.org",
    "cdn.example.net",
    "docs.example.com",
    "api.example.io",
    "news.example.org",
    "video.example.net",
    "shop.example.com",
    "static.example.net",
    "login.example.com",
    "updates.example.org",
    "maps.example.io",
];

fn mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x00, o[0], o[1], o[2], o[3]]
}

/// Roughly normal noise (Irwin-Hall), enough for sizes and delays.
fn noise(rng: &mut ChaCha8Rng) -> f64 {
    (0..6).map(|_| rng.random::<f64>()).sum::<f64>() - 3.0
}

fn log_normal(rng: &mut ChaCha8Rng, median: f64, spread: f64) -> f64 {
    median * (spread * noise(rng)).exp()
}

/// A TCP conversation being played out.
struct Tcp {
    client: (Ipv4Addr, u16),
    server: (Ipv4Addr, u16),
    t: u64,
    c_seq: u32,
    s_seq: u32,
    rtt: u64,
}

impl Tcp {
    /// A conversation whose round-trip time is drawn around `median_rtt_ms`.
    fn new(
        rng: &mut ChaCha8Rng,
        client: (Ipv4Addr, u16),
        server: (Ipv4Addr, u16),
        t: u64,
        median_rtt_ms: f64,
    ) -> Self {
        let rtt_ms = log_normal(rng, median_rtt_ms, 0.3);
        Tcp {
            client,
            server,
            t,
            c_seq: rng.random(),
            s_seq: rng.random(),
            rtt: (rtt_ms * MS as f64) as u64,
        }
    }

    /// One segment. `flags`: "S", "SA", "A", "PA", "FA", "R", "RA".
    fn segment(&mut self, out: &mut Emitter, from_client: bool, flags: &str, payload: &[u8]) {
        let (src, dst) = if from_client {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        let (seq, ack) = if from_client {
            (self.c_seq, self.s_seq)
        } else {
            (self.s_seq, self.c_seq)
        };
        let b = PacketBuilder::ethernet2(mac(src.0), mac(dst.0))
            .ipv4(src.0.octets(), dst.0.octets(), 64)
            .tcp(src.1, dst.1, seq, 64_240);
        let b = crate::with_tcp_flags(b, flags, ack);
        let mut frame = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut frame, payload).expect("writing to a Vec");
        out.frame(self.t, frame);
        let advance =
            payload.len() as u32 + flags.contains('S') as u32 + flags.contains('F') as u32;
        if from_client {
            self.c_seq = self.c_seq.wrapping_add(advance);
        } else {
            self.s_seq = self.s_seq.wrapping_add(advance);
        }
    }

    fn wait(&mut self, ns: u64) {
        self.t += ns;
    }

    fn handshake(&mut self, out: &mut Emitter) {
        self.segment(out, true, "S", &[]);
        self.wait(self.rtt / 2);
        self.segment(out, false, "SA", &[]);
        self.wait(self.rtt / 2);
        self.segment(out, true, "A", &[]);
    }

    /// Sends `len` bytes in MSS-sized segments (the first carrying `head`),
    /// with the other side acking every second segment.
    fn send(&mut self, out: &mut Emitter, from_client: bool, len: usize, head: &[u8]) {
        let mut left = len.max(head.len());
        let mut first = true;
        let mut segments = 0;
        while left > 0 {
            let n = left.min(1448);
            let payload = if first && !head.is_empty() {
                let mut p = head.to_vec();
                p.resize(n.max(head.len()), b'x');
                p
            } else {
                vec![0u8; n]
            };
            first = false;
            self.wait(50_000);
            self.segment(out, from_client, "PA", &payload);
            left -= payload.len().min(left);
            segments += 1;
            if segments % 2 == 0 || left == 0 {
                self.wait(self.rtt / 2);
                self.segment(out, !from_client, "A", &[]);
            }
        }
    }

    fn close(&mut self, out: &mut Emitter) {
        self.wait(MS);
        self.segment(out, true, "FA", &[]);
        self.wait(self.rtt / 2);
        self.segment(out, false, "FA", &[]);
        self.wait(self.rtt / 2);
        self.segment(out, true, "A", &[]);
    }
}

fn udp(out: &mut Emitter, t: u64, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) {
    let b = PacketBuilder::ethernet2(mac(src.0), mac(dst.0))
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1);
    let mut frame = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut frame, payload).expect("writing to a Vec");
    out.frame(t, frame);
}

/// A DNS query (and, with `answer`, its A-record response payload).
fn dns_message(id: u16, name: &str, qtype: u16, response: bool, rdata: Option<&[u8]>) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&(if response { 0x8180u16 } else { 0x0100 }).to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&(rdata.is_some() as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    if let Some(rdata) = rdata {
        m.extend_from_slice(&[0xc0, 0x0c]);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m.extend_from_slice(&300u32.to_be_bytes());
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(rdata);
    }
    m
}

/// A minimal TLS 1.2 ClientHello record carrying a server name.
fn client_hello(server_name: &str, random: [u8; 32]) -> Vec<u8> {
    let name = server_name.as_bytes();
    let mut sni = Vec::new();
    sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    let mut extensions = Vec::new();
    extensions.extend_from_slice(&0u16.to_be_bytes());
    extensions.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    extensions.extend_from_slice(&sni);
    let mut body = Vec::new();
    body.extend_from_slice(&[0x03, 0x03]);
    body.extend_from_slice(&random);
    body.push(0);
    body.extend_from_slice(&4u16.to_be_bytes());
    body.extend_from_slice(&[0xc0, 0x2f, 0x00, 0x9c]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![1];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// The hosts and what they run.
pub(crate) struct World {
    names: crate::Names,
    clients: Vec<Ipv4Addr>,
    external: Vec<Ipv4Addr>,
    next_port: Vec<u16>,
    duration_ns: u64,
}

impl World {
    pub(crate) fn new(config: &Config, rng: &mut ChaCha8Rng) -> Self {
        let clients: Vec<Ipv4Addr> = (0..config.hosts.max(2))
            .map(|i| Ipv4Addr::new(10, 0, 1, 10 + (i % 240) as u8))
            .collect();
        let external = (0..config.names.sites.len().max(1))
            .map(|i| Ipv4Addr::new(93, 184, 216, 10 + i as u8))
            .collect();
        let next_port = clients
            .iter()
            .map(|_| rng.random_range(32_768..40_000))
            .collect();
        World {
            names: config.names.clone(),
            clients,
            external,
            next_port,
            duration_ns: config.duration_s as u64 * 1_000_000_000,
        }
    }

    /// A fresh ephemeral port of client `i`: every flow has its own 5-tuple.
    fn port(&mut self, i: usize) -> u16 {
        let p = self.next_port[i];
        self.next_port[i] = if p >= 60_999 { 32_768 } else { p + 1 };
        p
    }

    fn dns_lookup(
        &mut self,
        rng: &mut ChaCha8Rng,
        out: &mut Emitter,
        i: usize,
        t: u64,
        name: &str,
        answer: Ipv4Addr,
    ) -> u64 {
        let client = (self.clients[i], self.port(i));
        let id: u16 = rng.random();
        udp(
            out,
            t,
            client,
            (DNS_SERVER, 53),
            &dns_message(id, name, 1, false, None),
        );
        let back = t + (log_normal(rng, 2.0, 0.4) * MS as f64) as u64;
        udp(
            out,
            back,
            (DNS_SERVER, 53),
            client,
            &dns_message(id, name, 1, true, Some(&answer.octets())),
        );
        back
    }

    pub(crate) fn normal_session(&mut self, rng: &mut ChaCha8Rng, out: &mut Emitter, t: u64) {
        let i = rng.random_range(0..self.clients.len());
        let kind = rng.random_range(0..100);
        match kind {
            0..=54 => {
                // HTTPS to an external site, after a DNS lookup.
                let site = rng.random_range(0..self.names.sites.len());
                let server = self.external[site];
                let name = self.names.sites[site].clone();
                let t = self.dns_lookup(rng, out, i, t, &name, server) + MS;
                let mut tcp =
                    Tcp::new(rng, (self.clients[i], self.port(i)), (server, 443), t, 30.0);
                tcp.handshake(out);
                tcp.send(out, true, 517, &client_hello(&name, rng.random()));
                tcp.send(
                    out,
                    false,
                    rng.random_range(2_500..6_000),
                    &[0x16, 0x03, 0x03],
                );
                for _ in 0..rng.random_range(1..6) {
                    tcp.wait((log_normal(rng, 400.0, 0.8) * MS as f64) as u64);
                    tcp.send(
                        out,
                        true,
                        log_normal(rng, 600.0, 0.4) as usize,
                        &[0x17, 0x03, 0x03],
                    );
                    tcp.send(
                        out,
                        false,
                        log_normal(rng, 20_000.0, 1.0).min(5e5) as usize,
                        &[0x17, 0x03, 0x03],
                    );
                }
                tcp.close(out);
            }
            55..=69 => {
                // Intranet HTTP.
                let mut tcp =
                    Tcp::new(rng, (self.clients[i], self.port(i)), (INTRANET, 80), t, 1.0);
                tcp.handshake(out);
                let request = format!(
                    "GET /index.html HTTP/1.1\r\nHost: {}\r\nUser-Agent: nadir-gen\r\n\r\n",
                    self.names.intranet_host
                );
                tcp.send(out, true, request.len(), request.as_bytes());
                tcp.send(
                    out,
                    false,
                    log_normal(rng, 8_000.0, 0.8) as usize,
                    b"HTTP/1.1 200 OK\r\n",
                );
                tcp.close(out);
            }
            70..=79 => {
                // NTP.
                let client = (self.clients[i], 123);
                udp(out, t, client, (NTP_SERVER, 123), &[0x23; 48]);
                udp(out, t + 800_000, (NTP_SERVER, 123), client, &[0x24; 48]);
            }
            80..=89 => {
                // File server transfer (SMB).
                let mut tcp = Tcp::new(
                    rng,
                    (self.clients[i], self.port(i)),
                    (FILE_SERVER, 445),
                    t,
                    1.0,
                );
                tcp.handshake(out);
                tcp.send(out, true, 300, &[0xfe, b'S', b'M', b'B']);
                tcp.send(
                    out,
                    false,
                    log_normal(rng, 100_000.0, 0.8).min(1e6) as usize,
                    &[0xfe, b'S', b'M', b'B'],
                );
                tcp.close(out);
            }
            _ => {
                // Interactive SSH: small packets, human pauses.
                let mut tcp = Tcp::new(
                    rng,
                    (self.clients[i], self.port(i)),
                    (SSH_SERVER, 22),
                    t,
                    1.0,
                );
                tcp.handshake(out);
                tcp.send(out, false, 41, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
                tcp.send(out, true, 41, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
                tcp.send(out, true, 1_500, &[]);
                tcp.send(out, false, 1_100, &[]);
                for _ in 0..rng.random_range(20..120) {
                    tcp.wait((log_normal(rng, 300.0, 0.9) * MS as f64) as u64);
                    tcp.send(out, true, 36, &[]);
                    tcp.send(out, false, rng.random_range(36..400), &[]);
                }
                tcp.close(out);
            }
        }
    }

    pub(crate) fn attack(
        &mut self,
        rng: &mut ChaCha8Rng,
        out: &mut Emitter,
        attack: Attack,
        t: u64,
    ) {
        let label = attack.label();
        match attack {
            Attack::SynScan | Attack::ConnectScan => {
                let target = self.clients[rng.random_range(0..self.clients.len())];
                let open = [22u16, 80, 443, 445];
                let mut at = t;
                for (n, port) in (1..=100u16).enumerate() {
                    at += rng.random_range(200_000..1_500_000);
                    let sport = 40_000 + (n as u16 % 20_000);
                    let mut tcp = Tcp::new(rng, (ATTACKER, sport), (target, port), at, 40.0);
                    tcp.segment(out, true, "S", &[]);
                    tcp.wait(tcp.rtt);
                    if open.contains(&port) {
                        tcp.segment(out, false, "SA", &[]);
                        tcp.wait(tcp.rtt / 2);
                        if attack == Attack::ConnectScan {
                            tcp.segment(out, true, "A", &[]);
                            tcp.wait(MS);
                            tcp.segment(out, true, "RA", &[]);
                        } else {
                            tcp.segment(out, true, "R", &[]);
                        }
                    } else {
                        tcp.segment(out, false, "RA", &[]);
                    }
                    out.label(TCP, (ATTACKER, sport), (target, port), label);
                }
            }
            Attack::SynFlood => {
                let mut at = t;
                for _ in 0..150 {
                    at += rng.random_range(1_000..200_000);
                    let spoofed = Ipv4Addr::new(
                        rng.random_range(1..224),
                        rng.random(),
                        rng.random(),
                        rng.random_range(1..255),
                    );
                    let sport = rng.random_range(1024..65_535);
                    let mut tcp = Tcp::new(rng, (spoofed, sport), (INTRANET, 80), at, 1.0);
                    tcp.segment(out, true, "S", &[]);
                    tcp.wait(tcp.rtt);
                    tcp.segment(out, false, "SA", &[]);
                    out.label(TCP, (spoofed, sport), (INTRANET, 80), label);
                }
            }
            Attack::SshBruteForce => {
                let mut at = t;
                for n in 0..60u16 {
                    at += (log_normal(rng, 600.0, 0.3) * MS as f64) as u64;
                    let sport = 50_000 + n;
                    let mut tcp = Tcp::new(rng, (ATTACKER, sport), (SSH_SERVER, 22), at, 40.0);
                    tcp.handshake(out);
                    tcp.send(out, false, 41, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
                    tcp.send(out, true, 23, b"SSH-2.0-libssh2_1.10.0\r\n");
                    tcp.send(out, true, 1_200, &[]);
                    tcp.send(out, false, 1_100, &[]);
                    tcp.send(out, true, 96, &[]);
                    tcp.send(out, false, 52, &[]);
                    tcp.close(out);
                    out.label(TCP, (ATTACKER, sport), (SSH_SERVER, 22), label);
                }
            }
            Attack::DnsTunnel => {
                let i = rng.random_range(0..self.clients.len());
                let mut at = t;
                for _ in 0..60 {
                    at += rng.random_range(50 * MS..400 * MS);
                    let chunk: String = (0..rng.random_range(40..60))
                        .map(|_| {
                            b"abcdefghijklmnopqrstuvwxyz234567"[rng.random_range(0..32)] as char
                        })
                        .collect();
                    let name = format!("{chunk}.{}", self.names.tunnel_domain);
                    let client = (self.clients[i], self.port(i));
                    let id: u16 = rng.random();
                    udp(
                        out,
                        at,
                        client,
                        (DNS_SERVER, 53),
                        &dns_message(id, &name, 16, false, None),
                    );
                    let txt: Vec<u8> = std::iter::once(120u8)
                        .chain((0..120).map(|_| rng.random_range(b'a'..=b'z')))
                        .collect();
                    udp(
                        out,
                        at + 30 * MS,
                        (DNS_SERVER, 53),
                        client,
                        &dns_message(id, &name, 16, true, Some(&txt)),
                    );
                    out.label(UDP, client, (DNS_SERVER, 53), label);
                }
            }
            Attack::Beaconing => {
                let i = rng.random_range(0..self.clients.len());
                let mut at = t;
                while at < t + self.duration_ns / 2 {
                    let client = (self.clients[i], self.port(i));
                    let mut tcp = Tcp::new(rng, client, (C2, 443), at, 80.0);
                    tcp.handshake(out);
                    tcp.send(out, true, 310, &[0x17, 0x03, 0x03]);
                    tcp.send(out, false, 120, &[0x17, 0x03, 0x03]);
                    tcp.close(out);
                    out.label(TCP, client, (C2, 443), label);
                    at += 5_000 * MS + rng.random_range(0..500 * MS);
                }
            }
            Attack::SlowExfiltration => {
                let i = rng.random_range(0..self.clients.len());
                let client = (self.clients[i], self.port(i));
                let mut tcp = Tcp::new(rng, client, (C2, 8443), t, 80.0);
                tcp.handshake(out);
                for _ in 0..300 {
                    tcp.wait(rng.random_range(200 * MS..800 * MS));
                    tcp.send(out, true, 40_000, &[0x17, 0x03, 0x03]);
                }
                tcp.close(out);
                out.label(TCP, client, (C2, 8443), label);
            }
        }
    }
}
