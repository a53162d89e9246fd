//! SILVER features and numbers in words an analyst reads without knowing
//! the column names: `src_distinct_dst_ports_60s = 2340, median 3` becomes
//! "2,340 distinct destination ports in 60 s; typical: 3".

/// A number with thousands separators; fractions to three significant
/// digits.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "–".into()
        } else {
            format!("{v}")
        };
    }
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() >= 1e15 {
        return format!("{v:.3e}");
    }
    if v.fract() == 0.0 {
        let digits = format!("{}", v.abs() as u64);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        return if v < 0.0 { format!("-{out}") } else { out };
    }
    if v.abs() >= 1000.0 {
        return number(v.round());
    }
    let decimals = if v.abs() >= 100.0 {
        1
    } else if v.abs() >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.decimals$}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Bytes in B, kB, MB, GB (powers of 1000).
pub fn bytes(v: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = v;
    let mut unit = 0;
    while value.abs() >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{} B", number(value))
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// Seconds as s, ms or µs.
pub fn seconds(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.001 {
        format!("{} µs", number(v * 1e6))
    } else if v != 0.0 && v.abs() < 1.0 {
        format!("{} ms", number(v * 1e3))
    } else {
        format!("{} s", number(v))
    }
}

/// How a feature's values are read.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Count,
    Bytes,
    Seconds,
    Share,
    YesNo,
}

impl Unit {
    fn show(self, v: f64) -> String {
        match self {
            Unit::Count => number(v),
            Unit::Bytes => bytes(v),
            Unit::Seconds => seconds(v),
            Unit::Share => format!("{}%", number(v * 100.0)),
            Unit::YesNo => if v >= 0.5 { "yes" } else { "no" }.into(),
        }
    }
}

/// What the feature measures, with `{}` where its value goes, and its unit.
fn phrase(feature: &str) -> Option<(String, Unit)> {
    let fixed = |p: &str, u| Some((p.to_string(), u));
    match feature {
        "duration_s" => return fixed("lasted {}", Unit::Seconds),
        "handshake_completed" => return fixed("TCP handshake completed: {}", Unit::YesNo),
        "src_flows_60s" => return fixed("{} flows from the source in 60 s", Unit::Count),
        "src_distinct_dst_hosts_60s" => {
            return fixed("{} distinct destination hosts in 60 s", Unit::Count);
        }
        "src_distinct_dst_ports_60s" => {
            return fixed("{} distinct destination ports in 60 s", Unit::Count);
        }
        "src_failed_ratio_60s" => {
            return fixed("{} of the source's connections in 60 s failed", Unit::Share);
        }
        "src_bytes_out_60s" => return fixed("{} sent by the source in 60 s", Unit::Bytes),
        _ => {}
    }
    let (direction, rest) = if let Some(r) = feature.strip_prefix("fwd_") {
        ("sent", r)
    } else if let Some(r) = feature.strip_prefix("bwd_") {
        ("received", r)
    } else {
        return None;
    };
    fn stat(s: &str) -> &str {
        match s {
            "min" => "smallest",
            "max" => "largest",
            "mean" => "mean",
            "std" => "spread (std) of",
            _ => s,
        }
    }
    match rest {
        "packets" => return Some((format!("{{}} packets {direction}"), Unit::Count)),
        "bytes" => return Some((format!("{{}} {direction}"), Unit::Bytes)),
        _ => {}
    }
    if let Some(s) = rest.strip_prefix("size_") {
        return Some((
            format!("{} packet size {direction}: {{}}", stat(s)),
            Unit::Bytes,
        ));
    }
    if let Some(s) = rest.strip_prefix("iat_").and_then(|r| r.strip_suffix("_s")) {
        return Some((
            format!("{} time between packets {direction}: {{}}", stat(s)),
            Unit::Seconds,
        ));
    }
    let flags = ["syn", "ack", "psh", "rst", "fin", "urg", "ece", "cwr"];
    if flags.contains(&rest) {
        return Some((
            format!("{{}} {} packets {direction}", rest.to_ascii_uppercase()),
            Unit::Count,
        ));
    }
    None
}

/// A feature's name in words, for table headers ("distinct destination
/// ports in 60 s").
pub fn feature_name(feature: &str) -> String {
    match feature {
        "duration_s" => return "duration".into(),
        "handshake_completed" => return "TCP handshake completed".into(),
        "src_failed_ratio_60s" => return "share of the source's connections failed in 60 s".into(),
        _ => {}
    }
    match phrase(feature) {
        Some((p, _)) => p
            .replace("{} ", "")
            .replace(": {}", "")
            .replace("{}", "")
            .trim()
            .to_string(),
        None => feature.replace('_', " "),
    }
}

/// One value of a feature in words.
pub fn value(feature: &str, v: f64) -> String {
    match phrase(feature) {
        Some((_, unit)) => unit.show(v),
        None => number(v),
    }
}

/// "2,340 distinct destination ports in 60 s; typical: 3".
pub fn contribution(feature: &str, v: f64, typical: f64) -> String {
    match phrase(feature) {
        Some((p, unit)) => format!(
            "{}; typical: {}",
            p.replacen("{}", &unit.show(v), 1),
            unit.show(typical)
        ),
        None => format!(
            "{}: {}; typical: {}",
            feature.replace('_', " "),
            number(v),
            number(typical)
        ),
    }
}

/// Why the host-group detector flagged a flow of `host`: which of the
/// host's series per minute stood apart from its peers'.
pub fn outlying_host(host: &str, series: &[String]) -> String {
    let mut what: Vec<&str> = series
        .iter()
        .filter_map(|s| s.split(':').nth(1))
        .map(|s| match s {
            "flows" => "flows",
            "bytes" => "bytes",
            "peers" => "distinct peers",
            other => other,
        })
        .collect();
    what.sort();
    what.dedup();
    if what.is_empty() {
        format!("{host} stood apart from the other hosts")
    } else {
        format!(
            "{host} stood apart from the other hosts in {} per minute",
            what.join(" and ")
        )
    }
}

/// A finding's kind for people.
pub fn finding_kind(kind: nadir_contract::findings::FindingKind) -> &'static str {
    use nadir_contract::findings::FindingKind as K;
    match kind {
        K::Scan => "scan",
        K::Flood => "flood",
        K::BruteForce => "brute force",
        K::Beacon => "beacon",
        K::LongConnection => "long connection",
        K::DnsTunnel => "DNS tunnel",
        K::Exfiltration => "exfiltration",
        K::OutlierHost => "outlying host",
        K::OutlierFlows => "outlying flows",
    }
}

/// A detector's name for people.
pub fn detector(name: &str) -> String {
    let (champion, algorithm) = match name.strip_prefix("champion_") {
        Some(a) => (true, a),
        None => (false, name),
    };
    let plain = match algorithm {
        "isolation_forest" => "Isolation Forest",
        "local_outlier_factor" => "Local Outlier Factor",
        "one_class_svm" => "One-Class SVM",
        "host_group" => "Host group (per-host series)",
        other => other,
    };
    if champion {
        format!("{plain} (champion)")
    } else {
        plain.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_in_words() {
        assert_eq!(
            contribution("src_distinct_dst_ports_60s", 2340.0, 3.0),
            "2,340 distinct destination ports in 60 s; typical: 3"
        );
        assert_eq!(
            contribution("fwd_bytes", 1_520_000.0, 640.0),
            "1.5 MB sent; typical: 640 B"
        );
        assert_eq!(
            contribution("bwd_iat_mean_s", 0.0042, 1.5),
            "mean time between packets received: 4.2 ms; typical: 1.5 s"
        );
        assert_eq!(
            contribution("src_failed_ratio_60s", 0.97, 0.0),
            "97% of the source's connections in 60 s failed; typical: 0%"
        );
        assert_eq!(
            contribution("fwd_syn", 1.0, 1.0),
            "1 SYN packets sent; typical: 1"
        );
        assert_eq!(
            contribution("serror_rate", 0.5, 0.0),
            "serror rate: 0.5; typical: 0"
        );
        assert_eq!(
            feature_name("src_distinct_dst_ports_60s"),
            "distinct destination ports in 60 s"
        );
        assert_eq!(feature_name("fwd_size_max"), "largest packet size sent");
        assert_eq!(
            outlying_host(
                "10.0.0.1",
                &[
                    "mad:peers".into(),
                    "dbscan:peers".into(),
                    "mad:bytes".into()
                ]
            ),
            "10.0.0.1 stood apart from the other hosts in bytes and distinct peers per minute"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(number(1234567.0), "1,234,567");
        assert_eq!(number(-1000.0), "-1,000");
        assert_eq!(number(0.12345), "0.123");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(f64::NAN), "–");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(2.5e20), "2.500e20");
        assert_eq!(number(-1e300), "-1.000e300");
        assert_eq!(bytes(999.0), "999 B");
        assert_eq!(bytes(2_500_000_000.0), "2.5 GB");
        assert_eq!(seconds(0.000_25), "250 µs");
        assert_eq!(
            detector("champion_isolation_forest"),
            "Isolation Forest (champion)"
        );
    }
}
