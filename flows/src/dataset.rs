//! A flow table as the detectors see it: numeric features, categorical
//! fields, and the hosts and times the group detector needs.
//!
//! Categorical fields are the protocol (by name), the class of the
//! destination port (the service of a well-known port, else `system`,
//! `registered` or `dynamic`), and the text columns flow CSVs use for
//! categories (`service`, `flag`, `state`). Addresses, names and other text
//! never become features: their values are unbounded and come from the
//! capture.

use std::borrow::Cow;

use nadir_detectors::prep::Dictionary;
use nadir_detectors::{Activity, Categorical, Dataset};
use polars::prelude::*;

use crate::table::{FlowError, FlowTable};

/// Text columns of flow CSV styles that hold categories (NSL-KDD's
/// `service` and `flag`, UNSW-NB15's `service` and `state`).
const CATEGORY_COLUMNS: [&str; 3] = ["service", "flag", "state"];

/// Well-known destination ports by the service that uses them.
const SERVICES: &[(u32, &str)] = &[
    (20, "ftp"),
    (21, "ftp"),
    (22, "ssh"),
    (23, "telnet"),
    (25, "smtp"),
    (53, "dns"),
    (67, "dhcp"),
    (68, "dhcp"),
    (80, "http"),
    (110, "pop3"),
    (123, "ntp"),
    (137, "netbios"),
    (138, "netbios"),
    (139, "netbios"),
    (143, "imap"),
    (161, "snmp"),
    (389, "ldap"),
    (443, "https"),
    (445, "smb"),
    (465, "smtp"),
    (587, "smtp"),
    (993, "imap"),
    (995, "pop3"),
    (1433, "mssql"),
    (3306, "mysql"),
    (3389, "rdp"),
    (5432, "postgresql"),
    (5900, "vnc"),
    (8080, "http"),
    (8443, "https"),
];

/// The class of a destination port.
pub fn port_class(protocol: Option<u32>, port: u32) -> &'static str {
    if matches!(protocol, Some(1 | 58)) {
        return "icmp";
    }
    if let Some((_, service)) = SERVICES.iter().find(|(p, _)| *p == port) {
        return service;
    }
    match port {
        0..=1023 => "system",
        1024..=49151 => "registered",
        _ => "dynamic",
    }
}

/// The name of an IP protocol number.
pub fn protocol_name(protocol: Option<u32>) -> Cow<'static, str> {
    match protocol {
        Some(6) => "tcp".into(),
        Some(17) => "udp".into(),
        Some(1) => "icmp".into(),
        Some(58) => "icmpv6".into(),
        Some(n) => n.to_string().into(),
        None => "unknown".into(),
    }
}

fn u32_values(frame: &DataFrame, name: &str) -> Option<Vec<Option<u32>>> {
    let column = frame.column(name).ok()?.cast(&DataType::UInt32).ok()?;
    Some(column.u32().ok()?.iter().collect())
}

/// A text column's values coded in `dictionary` (a missing value as ""),
/// without copying a string per row.
fn text_codes(frame: &DataFrame, name: &str, dictionary: &mut Dictionary) -> Option<Vec<u32>> {
    let column = frame.column(name).ok()?.cast(&DataType::String).ok()?;
    let values = column.str().ok()?;
    Some(
        values
            .iter()
            .map(|v| dictionary.code(v.unwrap_or("")))
            .collect(),
    )
}

impl FlowTable {
    /// The detectors' view of this table.
    pub fn dataset(&self) -> Result<Dataset, FlowError> {
        let frame = &self.frame;
        let mut categorical = Vec::new();
        let protocol = u32_values(frame, "protocol");
        if let Some(protocol) = &protocol {
            categorical.push(Categorical::from_values(
                "protocol",
                protocol.iter().map(|p| protocol_name(*p)),
            ));
        }
        if let Some(ports) = u32_values(frame, "dst_port") {
            let classes = ports.iter().enumerate().map(|(i, port)| match port {
                Some(port) => port_class(protocol.as_ref().and_then(|p| p[i]), *port),
                None => "unknown",
            });
            categorical.push(Categorical::from_values("dst_port_class", classes));
        }
        for name in &self.text {
            let mut levels = Dictionary::default();
            if CATEGORY_COLUMNS.contains(&name.to_ascii_lowercase().as_str())
                && let Some(codes) = text_codes(frame, name, &mut levels)
            {
                categorical.push(Categorical {
                    name: name.clone(),
                    levels: levels.levels,
                    codes,
                });
            }
        }
        Ok(Dataset {
            names: self.features.clone(),
            numeric: self.feature_matrix()?,
            categorical,
            activity: self.activity(),
        })
    }

    /// Hosts, times and bytes, when the table has them (captures and Zeek
    /// logs do; most flow CSVs have no times).
    fn activity(&self) -> Option<Activity> {
        let frame = &self.frame;
        let mut hosts = Dictionary::default();
        let src = text_codes(frame, "src_ip", &mut hosts)?;
        let dst = text_codes(frame, "dst_ip", &mut hosts)?;
        let start = frame
            .column("first_seen_ns")
            .ok()?
            .cast(&DataType::Int64)
            .ok()?;
        let start: Vec<Option<i64>> = start.i64().ok()?.iter().collect();
        let total = |name: &str| -> Vec<f64> {
            frame
                .column(name)
                .ok()
                .and_then(|c| c.cast(&DataType::Float64).ok())
                .and_then(|c| {
                    c.f64()
                        .ok()
                        .map(|v| v.iter().map(|x| x.unwrap_or(0.0)).collect())
                })
                .unwrap_or_else(|| vec![0.0; frame.height()])
        };
        let bytes: Vec<f64> = total("fwd_bytes")
            .iter()
            .zip(total("bwd_bytes"))
            .map(|(f, b)| f + b)
            .collect();
        let start_ns = start.into_iter().collect::<Option<Vec<i64>>>()?;
        Some(Activity {
            hosts: hosts.levels,
            src,
            dst,
            start_ns,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_fall_into_classes() {
        assert_eq!(port_class(Some(6), 443), "https");
        assert_eq!(port_class(Some(6), 999), "system");
        assert_eq!(port_class(Some(17), 5353), "registered");
        assert_eq!(port_class(Some(6), 55_000), "dynamic");
        assert_eq!(port_class(Some(1), 8), "icmp");
    }

    #[test]
    fn a_csv_gives_its_categories_and_no_activity() {
        let csv = "duration,protocol_type,service,flag,src_bytes,label\n\
                   0,tcp,http,SF,181,normal\n0,udp,domain_u,SF,45,normal\n2,tcp,private,REJ,0,neptune\n";
        let table = FlowTable::from_csv(csv.as_bytes()).unwrap();
        let data = table.dataset().unwrap();
        let names: Vec<&str> = data.categorical.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["protocol", "service", "flag"]);
        assert_eq!(data.categorical[0].levels, ["tcp", "udp"]);
        assert_eq!(data.numeric.ncols(), data.names.len());
        assert!(data.activity.is_none());
    }
}
