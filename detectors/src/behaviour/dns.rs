//! DNS tunnels: many distinct, long or random names, or names asked for
//! TXT or NULL records (what tunnels carry data in), under one domain by
//! one host.

use std::collections::{BTreeMap, BTreeSet};

use nadir_contract::findings::FindingKind;

use super::baseline::{Known, Threshold};
use super::{Behaviour, Flow, Judging, excess, group_by, score, seconds_words, span_s};

/// Data smuggled through DNS: high from the start.
const BASE: f64 = 0.6;
/// Bits a character of random base32 carries; names above this are random.
const RANDOM_BITS: f64 = 3.5;

/// The registered domain of a name, approximately: its last two labels, or
/// three where the second-level label is a short public suffix part
/// (`example.co.uk`). No public suffix list: `*.github.io` counts as one.
pub fn registered_domain(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
    let n = labels.len();
    let keep = if n >= 3 && labels[n - 1].len() == 2 && labels[n - 2].len() <= 3 {
        3
    } else {
        2
    };
    labels[n.saturating_sub(keep)..].join(".")
}

/// Shannon entropy of a text's characters, bits per character.
fn entropy(text: &str) -> f64 {
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    for c in text.chars() {
        *counts.entry(c).or_insert(0) += 1;
    }
    let n = text.chars().count() as f64;
    counts
        .values()
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Record types tunnels ask for: room for data in the answer.
fn carries_data(qtype: &str) -> bool {
    qtype.eq_ignore_ascii_case("TXT") || qtype.eq_ignore_ascii_case("NULL")
}

pub(super) fn tunnels(flows: &[Flow], judging: &Judging) -> Vec<Behaviour> {
    let params = judging.params;
    let asked = group_by(flows, |f| {
        f.dns_query
            .as_ref()
            .map(|q| (f.src.clone(), registered_domain(q)))
    });
    let mut found = Vec::new();
    for ((src, domain), rows) in asked {
        let names: BTreeSet<String> = rows
            .iter()
            .filter_map(|r| flows[*r].dns_query.as_ref())
            .map(|q| q.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        let known = match judging.baseline {
            None => Known::NoBaseline,
            Some(b) => match b.domains.get(&domain) {
                None => Known::Unseen,
                Some(d) => Known::Typical(d.names as f64),
            },
        };
        let threshold = Threshold::of(params.dns_min_names as f64, known, params.baseline_margin);
        if (names.len() as f64) < threshold.value || domain.is_empty() {
            continue;
        }
        let subdomains: Vec<&str> = names
            .iter()
            .map(|n| {
                n.strip_suffix(domain.as_str())
                    .unwrap_or(n)
                    .trim_end_matches('.')
            })
            .collect();
        let mean_len =
            subdomains.iter().map(|s| s.len() as f64).sum::<f64>() / subdomains.len() as f64;
        // Each name's own entropy, averaged: many different words together
        // use many characters, one random label uses them all at once.
        let bits = subdomains
            .iter()
            .map(|s| s.chars().filter(|c| *c != '.').collect::<String>())
            .filter(|s| !s.is_empty())
            .map(|s| entropy(&s))
            .sum::<f64>()
            / subdomains.len() as f64;
        let typed: Vec<&str> = rows
            .iter()
            .filter_map(|r| flows[*r].dns_qtype.as_deref())
            .collect();
        let data_share = if typed.is_empty() {
            0.0
        } else {
            typed.iter().filter(|t| carries_data(t)).count() as f64 / typed.len() as f64
        };
        if mean_len < params.dns_min_label_len
            && bits < RANDOM_BITS
            && data_share < params.dns_min_txt_share
        {
            continue;
        }
        let shape = ((mean_len / (2.0 * params.dns_min_label_len)).min(1.0))
            .max((bits / 5.0).min(1.0))
            .max(data_share);
        let types = if typed.is_empty() {
            String::new()
        } else {
            format!(", {:.0} % for TXT or NULL records", data_share * 100.0)
        };
        found.push(Behaviour {
            kind: FindingKind::DnsTunnel,
            explanation: format!(
                "{} distinct names under {domain} asked by {src} in {}, {mean_len:.0} characters before \
                 the domain on average, {bits:.1} bits of entropy a character in a name{types}; \
                 shape thresholds {:.0} characters, {RANDOM_BITS} bits or {:.0} % TXT or NULL; {}",
                names.len(),
                seconds_words(span_s(flows, &rows)),
                params.dns_min_label_len,
                params.dns_min_txt_share * 100.0,
                threshold.words("this domain", |v| format!("{v:.0} names from one host"))
            ),
            src,
            peer: domain,
            score: score(BASE, excess(names.len() as f64, threshold.value / 2.0) * shape),
            flows: rows,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::tests::{benign, numbered};
    use super::super::{Flow, UDP};
    use super::*;

    fn query(src: &str, name: &str, t: f64) -> Flow {
        Flow {
            src: src.into(),
            dst: "10.0.1.53".into(),
            src_port: 53_000,
            dst_port: 53,
            protocol: UDP,
            first_ns: (t * 1e9) as i64,
            last_ns: (t * 1e9) as i64 + 30_000_000,
            fwd_packets: 1,
            bwd_packets: 1,
            fwd_bytes: 90,
            bwd_bytes: 200,
            dns_query: Some(name.into()),
            ..Flow::default()
        }
    }

    #[test]
    fn registered_domains() {
        assert_eq!(registered_domain("a.b.tunnel.example.org."), "example.org");
        assert_eq!(registered_domain("www.bbc.co.uk"), "bbc.co.uk");
        assert_eq!(registered_domain("localhost"), "localhost");
    }

    #[test]
    fn random_subdomains_under_one_domain_are_a_tunnel() {
        let mut flows = benign();
        let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut state = 7u64;
        for i in 0..60u64 {
            let chunk: String = (0..48)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    alphabet[(state >> 59) as usize] as char
                })
                .collect();
            flows.push(query(
                "10.0.0.12",
                &format!("{chunk}.t.example.org"),
                i as f64 * 0.2,
            ));
        }
        // Ordinary lookups: few names, short.
        for (i, name) in ["www.example.com", "mail.example.com", "example.com"]
            .iter()
            .enumerate()
        {
            flows.push(query("10.0.0.11", name, i as f64));
        }
        let found = tunnels(&numbered(flows.clone()), &Judging::defaults(&flows));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].src.as_str(), found[0].peer.as_str()),
            ("10.0.0.12", "example.org")
        );
        assert!(
            found[0]
                .explanation
                .starts_with("60 distinct names under example.org asked by 10.0.0.12"),
            "{}",
            found[0].explanation
        );
    }

    #[test]
    fn many_short_ordinary_names_are_no_tunnel() {
        let words = [
            "www", "mail", "api", "cdn", "img", "static", "login", "shop", "news", "blog",
        ];
        let flows: Vec<Flow> = (0..30)
            .map(|i| {
                query(
                    "10.0.0.11",
                    &format!("{}{}.example.com", words[i % 10], i / 10),
                    i as f64,
                )
            })
            .collect();
        let found = tunnels(&numbered(flows.clone()), &Judging::defaults(&flows));
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn short_names_asked_for_txt_records_are_a_tunnel_too() {
        let asked = |qtype: &str| -> Vec<Flow> {
            (0..30)
                .map(|i| {
                    let mut f = query("10.0.0.12", &format!("q{i}.c2.example.net"), i as f64);
                    f.dns_qtype = Some(qtype.into());
                    f
                })
                .collect()
        };
        let flows = numbered(asked("TXT"));
        let found = tunnels(&flows, &Judging::defaults(&flows));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .explanation
                .contains(", 100 % for TXT or NULL records;"),
            "{}",
            found[0].explanation
        );
        let flows = numbered(asked("A"));
        assert!(tunnels(&flows, &Judging::defaults(&flows)).is_empty());
    }
}
