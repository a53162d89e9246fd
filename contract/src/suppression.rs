//! Suppression rules: patterns an analyst judged benign, hidden from the
//! findings queue wherever findings are shown or exported, past runs
//! included (they never change `findings.parquet`).
//!
//! A rule matches a finding by what the finding is about: its source host
//! and its peer (a host, `host:port`, `port N` or a name, see
//! [`Peer`](crate::findings::Peer)). Rules live, versioned, in PostgreSQL (`nadir-db`); each
//! evaluation's manifest records the rules in force when it ran.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::findings::{Finding, FindingKind, Peer};

/// What a rule matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Matcher {
    /// The source or the peer's address in a network (`10.0.0.0/24`, or
    /// one address).
    Cidr,
    /// A source (address or network) and a peer (address, `host:port` or
    /// name), separated by a space.
    Pair,
    /// The peer's port (a service or a sweep).
    Port,
    /// A peer name: `example.org` that name only, `*.example.org` the
    /// domain and every name under it.
    Domain,
    /// A peer's TLS SNI or HTTP host, exactly.
    ServerName,
}

impl Matcher {
    pub const ALL: [Matcher; 5] = [
        Matcher::Cidr,
        Matcher::Pair,
        Matcher::Port,
        Matcher::Domain,
        Matcher::ServerName,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Matcher::Cidr => "cidr",
            Matcher::Pair => "pair",
            Matcher::Port => "port",
            Matcher::Domain => "domain",
            Matcher::ServerName => "server_name",
        }
    }
}

impl FromStr for Matcher {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Matcher::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!("{s:?} is no suppression matcher (cidr, pair, port, domain, server_name)")
            })
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule's pattern, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Network(IpNet),
    Pair(IpNet, PeerPattern),
    Port(u16),
    Domain { name: String, subdomains: bool },
    ServerName(String),
}

/// The peer half of a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerPattern {
    Host(IpAddr),
    Service(IpAddr, u16),
    Name(String),
}

fn network(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("{text:?} is neither an address nor a network (10.0.0.0/24)"))
}

fn name(text: &str) -> Result<String, String> {
    let name = text.trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if valid {
        Ok(name)
    } else {
        Err(format!("{text:?} is not a DNS name"))
    }
}

impl Pattern {
    /// Checks `text` as a pattern for `matcher`, with a message that says
    /// what is expected.
    pub fn parse(matcher: Matcher, text: &str) -> Result<Pattern, String> {
        let text = text.trim();
        match matcher {
            Matcher::Cidr => network(text).map(Pattern::Network),
            Matcher::Pair => {
                let (src, peer) = text.split_once(char::is_whitespace).ok_or_else(|| {
                    format!("a pair is \"SOURCE PEER\" (10.0.0.5 203.0.113.9:443), not {text:?}")
                })?;
                let peer = match Peer::of(peer.trim()) {
                    Peer::Host(ip) => PeerPattern::Host(ip),
                    Peer::Service(ip, port) => PeerPattern::Service(ip, port),
                    Peer::Name(_) => PeerPattern::Name(name(peer.trim())?),
                    Peer::Port(_) | Peer::Many => {
                        return Err(format!(
                            "the peer of a pair is an address, host:port or a name, not {peer:?}"
                        ));
                    }
                };
                Ok(Pattern::Pair(network(src)?, peer))
            }
            Matcher::Port => text
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .map(Pattern::Port)
                .ok_or_else(|| format!("{text:?} is not a port (1-65535)")),
            Matcher::Domain => match text.strip_prefix("*.") {
                Some(rest) => Ok(Pattern::Domain {
                    name: name(rest)?,
                    subdomains: true,
                }),
                None => Ok(Pattern::Domain {
                    name: name(text)?,
                    subdomains: false,
                }),
            },
            Matcher::ServerName => name(text).map(Pattern::ServerName),
        }
    }

    /// Whether a finding from `src` to `peer` matches.
    pub fn matches(&self, src: &str, peer: &str) -> bool {
        let (src, peer) = (Peer::of(src), Peer::of(peer));
        match self {
            Pattern::Network(net) => [src.ip(), peer.ip()]
                .into_iter()
                .flatten()
                .any(|ip| net.contains(&ip)),
            Pattern::Pair(net, wanted) => {
                src.ip().is_some_and(|ip| net.contains(&ip))
                    && match (wanted, &peer) {
                        (PeerPattern::Host(ip), p) => p.ip() == Some(*ip),
                        (PeerPattern::Service(ip, port), Peer::Service(i, p)) => {
                            ip == i && port == p
                        }
                        (PeerPattern::Name(n), Peer::Name(p)) => n == p,
                        _ => false,
                    }
            }
            Pattern::Port(port) => peer.port() == Some(*port),
            Pattern::Domain { name, subdomains } => match &peer {
                Peer::Name(p) => {
                    p == name
                        || (*subdomains
                            && p.len() > name.len()
                            && p.ends_with(name.as_str())
                            && p.as_bytes()[p.len() - name.len() - 1] == b'.')
                }
                _ => false,
            },
            Pattern::ServerName(n) => matches!(&peer, Peer::Name(p) if p == n),
        }
    }
}

/// A suppression rule as it stands at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Stable across versions.
    pub id: i64,
    /// 1 when added; each change adds one.
    pub version: i32,
    pub matcher: Matcher,
    pub pattern: String,
    /// Only findings of this kind, where set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FindingKind>,
    pub owner: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When this version was made.
    pub at: DateTime<Utc>,
}

impl Rule {
    /// Whether it hides `finding`. A pattern that no longer parses hides
    /// nothing (rules are checked when added).
    pub fn hides(&self, finding: &Finding) -> bool {
        self.kind.is_none_or(|k| k == finding.kind)
            && Pattern::parse(self.matcher, &self.pattern)
                .is_ok_and(|p| p.matches(&finding.src, &finding.peer))
    }

    /// Whether it applies at `now` (not expired).
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }

    /// `domain *.example.org (beacon only)`: what it matches, in words.
    pub fn describe(&self) -> String {
        match self.kind {
            Some(kind) => format!("{} {} ({} only)", self.matcher, self.pattern, kind.name()),
            None => format!("{} {}", self.matcher, self.pattern),
        }
    }
}

/// The first rule in force that hides `finding`.
pub fn hidden_by<'a>(rules: &'a [Rule], finding: &Finding, now: DateTime<Utc>) -> Option<&'a Rule> {
    rules.iter().find(|r| r.in_force(now) && r.hides(finding))
}

/// "Suppress like this": the narrowest rule that would hide `finding` and
/// its like in other runs: its pair, or for a name, the name (a DNS
/// tunnel's whole domain).
pub fn proposal(finding: &Finding) -> Option<(Matcher, String, Option<FindingKind>)> {
    let kind = Some(finding.kind);
    let (matcher, pattern) = match (Peer::of(&finding.peer), Peer::of(&finding.src).ip()) {
        (Peer::Name(name), _) if finding.kind == FindingKind::DnsTunnel => {
            (Matcher::Domain, format!("*.{name}"))
        }
        (Peer::Name(name), Some(ip)) => (Matcher::Pair, format!("{ip} {name}")),
        (Peer::Name(name), None) => (Matcher::ServerName, name),
        (Peer::Host(_) | Peer::Service(..), Some(_)) => {
            (Matcher::Pair, format!("{} {}", finding.src, finding.peer))
        }
        (Peer::Host(ip) | Peer::Service(ip, _), None) => (Matcher::Cidr, ip.to_string()),
        (Peer::Port(port), None) => (Matcher::Port, port.to_string()),
        (Peer::Port(_) | Peer::Many, Some(ip)) => (Matcher::Cidr, ip.to_string()),
        (Peer::Many, None) => return None,
    };
    Some((matcher, pattern, kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::service_peer;

    fn finding(kind: FindingKind, src: &str, peer: &str) -> Finding {
        crate::findings::test_finding(kind, src, peer)
    }

    fn rule(matcher: Matcher, pattern: &str) -> Rule {
        Pattern::parse(matcher, pattern).unwrap();
        Rule {
            id: 1,
            version: 1,
            matcher,
            pattern: pattern.into(),
            kind: None,
            owner: "soc".into(),
            reason: "known".into(),
            expires_at: None,
            at: Utc::now(),
        }
    }

    #[test]
    fn peers_are_read_as_eval_writes_them() {
        assert_eq!(
            Peer::of("10.0.0.1"),
            Peer::Host("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            Peer::of("10.0.0.1:443"),
            Peer::Service("10.0.0.1".parse().unwrap(), 443)
        );
        assert_eq!(
            Peer::of(&service_peer("fe80::1", 53)),
            Peer::Service("fe80::1".parse().unwrap(), 53)
        );
        assert_eq!(Peer::of("port 445"), Peer::Port(445));
        assert_eq!(
            Peer::of("Updates.Example.NET."),
            Peer::Name("updates.example.net".into())
        );
        assert_eq!(Peer::of("150 sources"), Peer::Many);
        assert_eq!(Peer::of("8 peers"), Peer::Many);
    }

    #[test]
    fn each_matcher_hides_what_it_names_and_nothing_else() {
        let beacon = finding(FindingKind::Beacon, "10.0.1.27", "203.0.113.200:443");
        let tunnel = finding(FindingKind::DnsTunnel, "10.0.1.28", "tunnel.example.org");
        let sweep = finding(FindingKind::Scan, "198.51.100.66", "port 445");
        let named = finding(FindingKind::Beacon, "10.0.1.3", "cdn.example.org");

        assert!(rule(Matcher::Cidr, "10.0.1.0/24").hides(&beacon));
        assert!(rule(Matcher::Cidr, "203.0.113.200").hides(&beacon));
        assert!(!rule(Matcher::Cidr, "10.0.2.0/24").hides(&beacon));
        assert!(rule(Matcher::Pair, "10.0.1.27 203.0.113.200:443").hides(&beacon));
        assert!(rule(Matcher::Pair, "10.0.1.0/24 203.0.113.200").hides(&beacon));
        assert!(!rule(Matcher::Pair, "10.0.1.27 203.0.113.200:8443").hides(&beacon));
        assert!(rule(Matcher::Port, "443").hides(&beacon));
        assert!(rule(Matcher::Port, "445").hides(&sweep));
        assert!(!rule(Matcher::Port, "445").hides(&beacon));

        // `*.example.org` covers example.org itself and every name under it.
        let wildcard = rule(Matcher::Domain, "*.example.org");
        assert!(wildcard.hides(&tunnel) && wildcard.hides(&named));
        assert!(wildcard.hides(&finding(FindingKind::DnsTunnel, "10.0.0.9", "example.org")));
        assert!(!wildcard.hides(&finding(
            FindingKind::DnsTunnel,
            "10.0.0.9",
            "badexample.org"
        )));
        assert!(!rule(Matcher::Domain, "example.org").hides(&tunnel));
        assert!(rule(Matcher::ServerName, "CDN.example.org").hides(&named));
        assert!(!rule(Matcher::ServerName, "cdn.example.org").hides(&tunnel));

        let mut only_scans = rule(Matcher::Cidr, "198.51.100.66");
        only_scans.kind = Some(FindingKind::Scan);
        assert!(only_scans.hides(&sweep));
        assert!(!only_scans.hides(&finding(
            FindingKind::BruteForce,
            "198.51.100.66",
            "10.0.0.22:22"
        )));
    }

    #[test]
    fn bad_patterns_are_named() {
        for (matcher, text) in [
            (Matcher::Cidr, "10.0.0.0/33"),
            (Matcher::Cidr, "example.org"),
            (Matcher::Pair, "10.0.0.1"),
            (Matcher::Pair, "10.0.0.1 port 80"),
            (Matcher::Port, "0"),
            (Matcher::Port, "http"),
            (Matcher::Domain, "*.exa mple.org"),
            (Matcher::ServerName, "<script>"),
        ] {
            let e = Pattern::parse(matcher, text).unwrap_err();
            let named = e.contains(text.trim_start_matches("*."))
                || (matcher == Matcher::Pair && e.contains("pair"));
            assert!(named, "{e}");
        }
        assert!(
            "subnet"
                .parse::<Matcher>()
                .unwrap_err()
                .contains("cidr, pair")
        );
    }

    #[test]
    fn expired_rules_hide_nothing() {
        let mut r = rule(Matcher::Port, "443");
        let beacon = finding(FindingKind::Beacon, "10.0.1.27", "203.0.113.200:443");
        let now = Utc::now();
        assert!(hidden_by(std::slice::from_ref(&r), &beacon, now).is_some());
        r.expires_at = Some(now - chrono::Duration::minutes(1));
        assert!(hidden_by(std::slice::from_ref(&r), &beacon, now).is_none());
    }

    #[test]
    fn proposals_hide_the_finding_they_come_from() {
        for f in [
            finding(FindingKind::Beacon, "10.0.1.27", "203.0.113.200:443"),
            finding(FindingKind::DnsTunnel, "10.0.1.28", "tunnel.example.org"),
            finding(FindingKind::Beacon, "10.0.1.3", "cdn.example.org"),
            finding(FindingKind::Flood, "150 sources", "10.0.0.80:80"),
            finding(FindingKind::Scan, "198.51.100.66", "port 445"),
            finding(FindingKind::OutlierFlows, "10.0.0.7", "8 peers"),
        ] {
            let (matcher, pattern, kind) = proposal(&f).unwrap();
            let mut r = rule(matcher, &pattern);
            r.kind = kind;
            assert!(r.hides(&f), "{f:?}: {matcher} {pattern}");
        }
    }
}
