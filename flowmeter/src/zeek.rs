//! Zeek `conn.log`, tab-separated (with its `#fields` header) or JSON lines,
//! read into the same flow records as captures.
//!
//! A conn.log row is already a bidirectional flow: the originator is the
//! source. It gives totals, not distributions: size statistics are the mean
//! packet size (min = mean = max, standard deviation 0), inter-arrival
//! statistics are 0, and TCP flag counts come from the `history` string
//! (upper case from the originator, lower case from the responder; each
//! letter as often as it appears). Application names are not in conn.log.
//!
//! Every value is checked before it is used: times and durations must fit
//! in an `i64` of nanoseconds (the years 1678 to 2262), ports in 0..=65535,
//! counts must be non-negative numbers; anything else is an error naming
//! the line and the field, never an overflow.

use std::net::IpAddr;

use serde_json::Value;

use crate::record::{AppNames, Direction, EndReason, FlowRecord, HostContext, Stats};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZeekError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("no #fields header before the first record (is this a Zeek TSV log?)")]
    NoFields,
    #[error("the log has no {0} field")]
    MissingField(&'static str),
    #[error("this is a Zeek {0} log, not conn.log")]
    NotConn(String),
}

/// One conn.log record, before it becomes a flow.
#[derive(Debug, Default)]
struct Conn {
    ts: f64,
    orig_h: Option<IpAddr>,
    orig_p: u16,
    resp_h: Option<IpAddr>,
    resp_p: u16,
    proto: String,
    duration: f64,
    conn_state: String,
    history: String,
    orig_pkts: u64,
    orig_ip_bytes: u64,
    resp_pkts: u64,
    resp_ip_bytes: u64,
}

fn flags(history: &str, originator: bool) -> [u32; 8] {
    // Index as FLAG_NAMES: syn ack psh rst fin urg ece cwr.
    let mut f = [0u32; 8];
    let mut count = |i: usize| f[i] = f[i].saturating_add(1);
    for c in history
        .chars()
        .filter(|c| c.is_ascii_uppercase() == originator)
    {
        match c.to_ascii_lowercase() {
            's' => count(0),
            'h' => {
                count(0);
                count(1)
            }
            'a' => count(1),
            'd' => count(2),
            'r' => count(3),
            'f' => count(4),
            _ => {}
        }
    }
    f
}

/// Nanoseconds of `seconds` read from the log, if an `i64` holds them
/// (the years 1678 to 2262 as a time).
fn nanoseconds(seconds: f64) -> Option<i64> {
    let ns = seconds * 1e9;
    // i64::MAX as f64 rounds up to 2^63, which no i64 holds.
    (ns.is_finite() && ns >= i64::MIN as f64 && ns < i64::MAX as f64).then_some(ns as i64)
}

fn direction(packets: u64, bytes: u64, flags: [u32; 8]) -> Direction {
    let mean = if packets == 0 {
        0.0
    } else {
        bytes as f64 / packets as f64
    };
    Direction {
        packets,
        bytes,
        sizes: Stats::uniform(packets, mean),
        iat: Stats::default(),
        last_ts_ns: None,
        flags,
    }
}

impl Conn {
    fn into_record(self, line: usize) -> Result<FlowRecord, ZeekError> {
        let bad = |reason: &str| ZeekError::Line {
            line,
            reason: reason.into(),
        };
        let protocol = match self.proto.as_str() {
            "tcp" => 6,
            "udp" => 17,
            "icmp" => 1,
            "icmp6" | "ipv6-icmp" => 58,
            other => other.parse().map_err(|_| bad("unknown proto"))?,
        };
        let first_ns = nanoseconds(self.ts).ok_or_else(|| {
            bad(&format!(
                "ts={} is not a time nadir can represent (the years 1678 to 2262)",
                self.ts
            ))
        })?;
        let duration_ns = nanoseconds(self.duration.max(0.0)).ok_or_else(|| {
            bad(&format!(
                "duration={} s is longer than nadir can represent (292 years)",
                self.duration
            ))
        })?;
        let last_ns = first_ns.checked_add(duration_ns).ok_or_else(|| {
            bad(&format!(
                "ts={} plus duration={} s ends after the year 2262",
                self.ts, self.duration
            ))
        })?;
        let end = match self.conn_state.as_str() {
            "SF" => EndReason::Fin,
            s if s.starts_with("RST") || s == "REJ" => EndReason::Rst,
            _ => EndReason::Idle,
        };
        Ok(FlowRecord {
            src: self.orig_h.ok_or_else(|| bad("id.orig_h is missing"))?,
            dst: self.resp_h.ok_or_else(|| bad("id.resp_h is missing"))?,
            src_port: self.orig_p,
            dst_port: self.resp_p,
            protocol,
            first_ns,
            last_ns,
            fwd: direction(
                self.orig_pkts,
                self.orig_ip_bytes,
                flags(&self.history, true),
            ),
            bwd: direction(
                self.resp_pkts,
                self.resp_ip_bytes,
                flags(&self.history, false),
            ),
            handshake_completed: protocol == 6
                && (matches!(
                    self.conn_state.as_str(),
                    "SF" | "S1" | "S2" | "S3" | "RSTO" | "RSTR"
                ) || (self.history.contains('S')
                    && self.history.contains('h')
                    && self.history.contains('A'))),
            end,
            app: AppNames::default(),
            context: HostContext::default(),
        })
    }

    fn set(&mut self, field: &str, value: &str) -> Result<(), String> {
        let unset = value == "-" || value == "(empty)" || value.is_empty();
        let num = |v: &str| -> Result<f64, String> {
            if unset {
                return Ok(0.0);
            }
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(x),
                _ => Err(format!("{field}={v:?} is not a number")),
            }
        };
        let port = |v: &str| -> Result<u16, String> {
            let x = num(v)?;
            if x.fract() == 0.0 && (0.0..=65535.0).contains(&x) {
                Ok(x as u16)
            } else {
                Err(format!("{field}={v:?} is not a port (0 to 65535)"))
            }
        };
        let count = |v: &str| -> Result<u64, String> {
            let x = num(v)?;
            if x >= 0.0 {
                // Beyond u64::MAX saturates: no real counter gets there.
                Ok(x as u64)
            } else {
                Err(format!("{field}={v:?} is not a count (negative)"))
            }
        };
        match field {
            "ts" => self.ts = num(value)?,
            "id.orig_h" => {
                self.orig_h = Some(
                    value
                        .parse()
                        .map_err(|_| format!("id.orig_h={value:?} is not an address"))?,
                )
            }
            "id.resp_h" => {
                self.resp_h = Some(
                    value
                        .parse()
                        .map_err(|_| format!("id.resp_h={value:?} is not an address"))?,
                )
            }
            "id.orig_p" => self.orig_p = port(value)?,
            "id.resp_p" => self.resp_p = port(value)?,
            "proto" => self.proto = value.to_string(),
            "duration" => self.duration = num(value)?,
            "conn_state" if !unset => self.conn_state = value.to_string(),
            "history" if !unset => self.history = value.to_string(),
            "orig_pkts" => self.orig_pkts = count(value)?,
            "orig_ip_bytes" => self.orig_ip_bytes = count(value)?,
            "resp_pkts" => self.resp_pkts = count(value)?,
            "resp_ip_bytes" => self.resp_ip_bytes = count(value)?,
            _ => {}
        }
        Ok(())
    }
}

const REQUIRED: [&str; 8] = [
    "ts",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "orig_pkts",
    "resp_pkts",
];

/// A conn.log (tab-separated or JSON lines) to flow records in SILVER
/// order, with per-host context over `context_window_ns`.
pub fn flows_from_conn_log(
    text: &str,
    json: bool,
    context_window_ns: i64,
) -> Result<Vec<FlowRecord>, ZeekError> {
    let mut flows = if json {
        read_json_lines(text)?
    } else {
        read_tsv(text)?
    };
    crate::record::sort_flows(&mut flows);
    crate::context::add_host_context(&mut flows, context_window_ns);
    Ok(flows)
}

/// Reads a tab-separated conn.log.
pub fn read_tsv(text: &str) -> Result<Vec<FlowRecord>, ZeekError> {
    let mut fields: Option<Vec<&str>> = None;
    let mut separator = "\t".to_string();
    let mut flows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if let Some(rest) = line.strip_prefix('#') {
            let (key, value) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
            match key {
                "separator" => {
                    separator = value.trim().replace("\\x09", "\t").replace("\\x20", " ")
                }
                "path" if value.trim() != "conn" => {
                    return Err(ZeekError::NotConn(value.trim().into()));
                }
                "fields" => {
                    let names: Vec<&str> = value.split(separator.as_str()).collect();
                    for required in REQUIRED {
                        if !names.contains(&required) {
                            return Err(ZeekError::MissingField(required));
                        }
                    }
                    fields = Some(names);
                }
                _ => {}
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let names = fields.as_ref().ok_or(ZeekError::NoFields)?;
        let values: Vec<&str> = line.split(separator.as_str()).collect();
        if values.len() != names.len() {
            return Err(ZeekError::Line {
                line: line_no,
                reason: format!(
                    "{} fields where #fields names {}",
                    values.len(),
                    names.len()
                ),
            });
        }
        let mut conn = Conn::default();
        for (name, value) in names.iter().zip(values) {
            conn.set(name, value).map_err(|reason| ZeekError::Line {
                line: line_no,
                reason,
            })?;
        }
        flows.push(conn.into_record(line_no)?);
    }
    Ok(flows)
}

/// Reads conn.log as JSON lines (Zeek's `LogAscii::use_json`).
pub fn read_json_lines(text: &str) -> Result<Vec<FlowRecord>, ZeekError> {
    let mut flows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| ZeekError::Line {
            line: line_no,
            reason,
        };
        let value: Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        for required in REQUIRED {
            if !object.contains_key(required) {
                return Err(bad(format!(
                    "no {required} field (is this a Zeek conn.log?)"
                )));
            }
        }
        let mut conn = Conn::default();
        for (name, value) in object {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Null => "-".into(),
                _ => continue,
            };
            conn.set(name, &text).map_err(bad)?;
        }
        flows.push(conn.into_record(line_no)?);
    }
    Ok(flows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSV: &str = "#separator \\x09
#set_separator\t,
#empty_field\t(empty)
#unset_field\t-
#path\tconn
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents
#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]
1767225600.123456\tCab1\t10.0.0.1\t40000\t10.0.0.2\t80\ttcp\thttp\t0.07\t38\t500\tSF\t-\t-\t0\tShADadFf\t5\t278\t3\t620\t-
1767225601.000000\tCab2\t10.0.0.1\t53000\t10.0.0.53\t53\tudp\tdns\t-\t-\t-\tS0\t-\t-\t0\tD\t1\t60\t0\t0\t-
#close\t2026-01-01-00-00-05
";

    #[test]
    fn tsv_rows_become_flows() {
        let flows = read_tsv(TSV).unwrap();
        assert_eq!(flows.len(), 2);
        let http = &flows[0];
        assert_eq!(
            (http.src_port, http.dst_port, http.protocol),
            (40000, 80, 6)
        );
        assert_eq!(
            (
                http.fwd.packets,
                http.fwd.bytes,
                http.bwd.packets,
                http.bwd.bytes
            ),
            (5, 278, 3, 620)
        );
        assert_eq!(http.first_ns, 1_767_225_600_123_456_000);
        assert!((http.duration_s() - 0.07).abs() < 1e-6);
        assert!(http.handshake_completed);
        assert_eq!(http.end, EndReason::Fin);
        assert_eq!(http.fwd.flags[0], 1, "S");
        assert_eq!(http.bwd.flags[0], 1, "h is the responder's SYN-ACK");
        assert!((http.fwd.sizes.mean() - 278.0 / 5.0).abs() < 1e-9);
        let dns = &flows[1];
        assert_eq!(
            (dns.protocol, dns.bwd.packets, dns.duration_s()),
            (17, 0, 0.0)
        );
    }

    #[test]
    fn json_lines_read_the_same() {
        let json = r#"{"ts":1767225600.123456,"uid":"Cab1","id.orig_h":"10.0.0.1","id.orig_p":40000,"id.resp_h":"10.0.0.2","id.resp_p":80,"proto":"tcp","service":"http","duration":0.07,"orig_bytes":38,"resp_bytes":500,"conn_state":"SF","missed_bytes":0,"history":"ShADadFf","orig_pkts":5,"orig_ip_bytes":278,"resp_pkts":3,"resp_ip_bytes":620}"#;
        let from_json = read_json_lines(json).unwrap();
        let from_tsv = read_tsv(TSV).unwrap();
        assert_eq!(from_json[0], from_tsv[0]);
    }

    #[test]
    fn malformed_logs_name_the_line() {
        let bad = TSV.replace("\t278\t", "\tmany\t");
        let err = read_tsv(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("line 8:") && err.contains("orig_ip_bytes"),
            "{err}"
        );
        let short = TSV.replace("\t620\t-\n", "\n");
        assert!(
            read_tsv(&short)
                .unwrap_err()
                .to_string()
                .contains("fields where #fields names")
        );
        assert_eq!(
            read_tsv(&TSV.replace("#path\tconn", "#path\tdns")),
            Err(ZeekError::NotConn("dns".into()))
        );
        assert!(
            read_json_lines("{\"ts\": 1}")
                .unwrap_err()
                .to_string()
                .contains("no id.orig_h")
        );
        assert!(read_json_lines("[1,2]").is_err());
    }

    /// One JSON conn.log record with `field` set to `value` (raw JSON).
    fn with(field: &str, value: &str) -> String {
        let mut record: serde_json::Map<String, Value> = serde_json::from_str(
            r#"{"ts":1767225600.5,"id.orig_h":"10.0.0.1","id.orig_p":40000,"id.resp_h":"10.0.0.2","id.resp_p":80,"proto":"tcp","duration":1.5,"orig_pkts":5,"orig_ip_bytes":278,"resp_pkts":3,"resp_ip_bytes":620}"#,
        )
        .unwrap();
        record.insert(field.into(), serde_json::from_str(value).unwrap());
        Value::Object(record).to_string()
    }

    #[test]
    fn crafted_values_are_errors_that_name_the_field_never_overflows() {
        for (field, value, says) in [
            ("duration", "9223372036854775807", "duration="),
            ("duration", "1e300", "duration="),
            ("ts", "9223372036854775807", "ts="),
            ("ts", "-1e300", "ts="),
            ("id.orig_p", "70000", "not a port"),
            ("id.resp_p", "-1", "not a port"),
            ("id.resp_p", "80.5", "not a port"),
            ("orig_pkts", "-5", "not a count"),
            ("resp_ip_bytes", "\"NaN\"", "not a number"),
            ("duration", "\"inf\"", "not a number"),
        ] {
            let err = read_json_lines(&with(field, value))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("line 1:") && err.contains(says),
                "{field}={value}: {err}"
            );
        }
        // A time and a duration that each fit but end after 2262 together.
        let late = with("ts", "9000000000").replace(r#""duration":1.5"#, r#""duration":3e8"#);
        let err = read_json_lines(&late).unwrap_err().to_string();
        assert!(err.contains("ends after the year 2262"), "{err}");
        // The largest counts saturate the per-host sums instead of overflowing.
        let huge = format!(
            "{}\n{}",
            with("orig_ip_bytes", "1.8e19"),
            with("orig_ip_bytes", "1.8e19").replace("40000", "40001")
        );
        let flows = flows_from_conn_log(&huge, true, 60_000_000_000).unwrap();
        assert_eq!(flows[1].context.bytes_out, u64::MAX);
        // The TSV reader checks the same way.
        let bad = TSV.replace("\t0.07\t", "\t9223372036854775807\t");
        let err = read_tsv(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("line 8:") && err.contains("duration="),
            "{err}"
        );
    }
}
