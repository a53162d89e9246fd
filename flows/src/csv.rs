//! Flow CSV import: a CSV exported from a flow tool, read strictly into a
//! SILVER [`FlowTable`].
//!
//! Flow CSVs come in styles (CICFlowMeter, UNSW-NB15, NSL-KDD) that name the
//! same things differently and in other units. Columns of a known style take
//! their SILVER name and unit, identity columns (addresses, ports, protocol)
//! keep SILVER's types and never become features, and the label, whichever
//! of `label`, `class` or `attack_cat` holds it, becomes `label` and is never
//! a feature; docs/silver.md ("From a flow CSV") is the user's account. Errors
//! name the column and the row. Before polars parses anything, the text is
//! held to [`TextLimits`]: columns in the header and bytes per line (the
//! same limits apply to Zeek's tab-separated logs, [`check_text`]). This
//! module only reads CSV: format detection is [`crate::format`]'s, the
//! table and its Parquet [`crate::table`]'s.

use std::io::Cursor;

use polars::prelude::*;

use crate::table::{FLOW_ID, FlowError, FlowTable, LABEL, check_finite, flow_id_column};

const LABEL_NAMES: [&str; 3] = ["label", "class", "attack_cat"];

fn csv_error(e: PolarsError) -> FlowError {
    FlowError::Csv(e.to_string())
}

/// `column` as text.
fn as_text(column: &Column) -> Result<Column, FlowError> {
    column.cast(&DataType::String).map_err(csv_error)
}

fn is_number(s: &str) -> bool {
    s.trim().parse::<f64>().is_ok()
}

/// How wide a text table may be before it is parsed: hostile input (a
/// header of 100 000 columns, one line of a gigabyte) gets an error naming
/// the limit, not a parser's whole memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLimits {
    /// `NADIR_MAX_COLUMNS`: columns the header may name.
    pub columns: usize,
    /// `NADIR_MAX_LINE_BYTES`: bytes of one line, its line break left out.
    pub line_bytes: usize,
}

impl Default for TextLimits {
    fn default() -> Self {
        TextLimits {
            columns: 10_000,
            line_bytes: 1 << 20,
        }
    }
}

/// Fields of one delimited line, `"`-quoted delimiters left out.
pub fn count_fields(line: &[u8], delimiter: u8) -> usize {
    let mut quoted = false;
    let mut fields = 1;
    for &b in line {
        if b == b'"' {
            quoted = !quoted;
        } else if b == delimiter && !quoted {
            fields += 1;
        }
    }
    fields
}

/// Holds a delimited text to `limits`: the columns its header line names
/// (the first line, or for a Zeek log its `#fields` line, `header`
/// picking it) and the length of every line.
pub fn check_text(
    bytes: &[u8],
    delimiter: u8,
    header: impl Fn(&[u8]) -> bool,
    limits: TextLimits,
) -> Result<(), FlowError> {
    let mut header_seen = false;
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !header_seen && header(line) {
            header_seen = true;
            let columns = count_fields(line, delimiter);
            if columns > limits.columns {
                return Err(FlowError::TooManyColumns {
                    columns,
                    limit: limits.columns,
                });
            }
        }
        if line.len() > limits.line_bytes {
            return Err(FlowError::LineTooLong {
                line: i + 1,
                bytes: line.len(),
                limit: limits.line_bytes,
            });
        }
    }
    Ok(())
}

impl FlowTable {
    /// Reads a flow CSV strictly within the default [`TextLimits`]; see
    /// [`FlowTable::from_csv_within`].
    pub fn from_csv(bytes: &[u8]) -> Result<Self, FlowError> {
        Self::from_csv_within(bytes, TextLimits::default())
    }

    /// Reads a flow CSV strictly: a header of more columns or a line of
    /// more bytes than `limits` allow is refused before it is parsed;
    /// ragged rows, non-numbers in numeric columns and empty or non-finite
    /// feature values are errors that name the column and the row.
    pub fn from_csv_within(bytes: &[u8], limits: TextLimits) -> Result<Self, FlowError> {
        check_text(bytes, b',', |_| true, limits)?;
        let frame = CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(None)
            .into_reader_with_file_handle(Cursor::new(bytes))
            .finish()
            .map_err(csv_error)?;
        if frame.height() == 0 {
            return Err(FlowError::NoRows);
        }
        let mut features = Vec::new();
        let mut text = Vec::new();
        let mut columns: Vec<Column> = Vec::with_capacity(frame.width() + 1);
        columns.push(flow_id_column(0, frame.height()));
        let labelled = match label_column(&frame)? {
            Some(label) => {
                columns.push(label);
                true
            }
            None => false,
        };
        let mut taken: Vec<&str> = Vec::new();
        for column in frame.columns() {
            let name = column.name().to_string();
            if name == FLOW_ID {
                return Err(FlowError::Reserved(name));
            }
            if LABEL_NAMES.contains(&name.trim().to_ascii_lowercase().as_str()) {
                continue;
            }
            // A column of a known flow CSV style takes its SILVER name and unit.
            let known = silver_name(&name).filter(|(silver, _)| !taken.contains(silver));
            if let Some((silver, _)) = known {
                taken.push(silver);
                if IDENTITY.contains(&silver) {
                    columns.push(identity_column(silver, column)?);
                    continue;
                }
            }
            let out_name =
                known.map_or_else(|| name.trim().to_string(), |(silver, _)| silver.to_string());
            if column.dtype().is_primitive_numeric() || column.dtype() == &DataType::Boolean {
                let mut values = column.cast(&DataType::Float64).map_err(csv_error)?;
                check_finite(&name, values.f64().expect("cast to f64"))?;
                if let Some((_, factor)) = known.filter(|(_, f)| *f != 1.0) {
                    values = (values.as_materialized_series() * factor).into();
                }
                columns.push(values.with_name(out_name.as_str().into()));
                features.push(out_name);
            } else {
                let values = as_text(column)?;
                check_not_half_numeric(&name, values.str().expect("cast to str"))?;
                columns.push(values.with_name(out_name.as_str().into()));
                text.push(out_name);
            }
        }
        if features.is_empty() {
            return Err(FlowError::NoFeatures(
                frame
                    .get_column_names()
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        let frame = DataFrame::new(frame.height(), columns).map_err(csv_error)?;
        Ok(FlowTable {
            frame,
            features,
            labelled,
            text,
        })
    }
}

/// SILVER columns that identify a flow rather than describe it: never features.
const IDENTITY: [&str; 5] = ["src_ip", "dst_ip", "src_port", "dst_port", "protocol"];

/// Columns of well-known flow CSV styles (CICFlowMeter, UNSW-NB15, NSL-KDD)
/// that correspond to SILVER columns: name with everything but letters and
/// digits removed, lower case; the SILVER name; the factor to SILVER's unit.
const KNOWN_COLUMNS: &[(&str, &str, f64)] = &[
    // CICFlowMeter (CIC-IDS2017 and CSE-CIC-IDS2018 spellings).
    ("srcip", "src_ip", 1.0),
    ("sourceip", "src_ip", 1.0),
    ("dstip", "dst_ip", 1.0),
    ("destinationip", "dst_ip", 1.0),
    ("srcport", "src_port", 1.0),
    ("sourceport", "src_port", 1.0),
    ("dstport", "dst_port", 1.0),
    ("destinationport", "dst_port", 1.0),
    ("protocol", "protocol", 1.0),
    ("flowduration", "duration_s", 1e-6),
    ("totfwdpkts", "fwd_packets", 1.0),
    ("totalfwdpackets", "fwd_packets", 1.0),
    ("totbwdpkts", "bwd_packets", 1.0),
    ("totalbackwardpackets", "bwd_packets", 1.0),
    ("totlenfwdpkts", "fwd_bytes", 1.0),
    ("totallengthoffwdpackets", "fwd_bytes", 1.0),
    ("totlenbwdpkts", "bwd_bytes", 1.0),
    ("totallengthofbwdpackets", "bwd_bytes", 1.0),
    ("fwdpktlenmin", "fwd_size_min", 1.0),
    ("fwdpacketlengthmin", "fwd_size_min", 1.0),
    ("fwdpktlenmean", "fwd_size_mean", 1.0),
    ("fwdpacketlengthmean", "fwd_size_mean", 1.0),
    ("fwdpktlenstd", "fwd_size_std", 1.0),
    ("fwdpacketlengthstd", "fwd_size_std", 1.0),
    ("fwdpktlenmax", "fwd_size_max", 1.0),
    ("fwdpacketlengthmax", "fwd_size_max", 1.0),
    ("bwdpktlenmin", "bwd_size_min", 1.0),
    ("bwdpacketlengthmin", "bwd_size_min", 1.0),
    ("bwdpktlenmean", "bwd_size_mean", 1.0),
    ("bwdpacketlengthmean", "bwd_size_mean", 1.0),
    ("bwdpktlenstd", "bwd_size_std", 1.0),
    ("bwdpacketlengthstd", "bwd_size_std", 1.0),
    ("bwdpktlenmax", "bwd_size_max", 1.0),
    ("bwdpacketlengthmax", "bwd_size_max", 1.0),
    ("fwdiatmin", "fwd_iat_min_s", 1e-6),
    ("fwdiatmean", "fwd_iat_mean_s", 1e-6),
    ("fwdiatstd", "fwd_iat_std_s", 1e-6),
    ("fwdiatmax", "fwd_iat_max_s", 1e-6),
    ("bwdiatmin", "bwd_iat_min_s", 1e-6),
    ("bwdiatmean", "bwd_iat_mean_s", 1e-6),
    ("bwdiatstd", "bwd_iat_std_s", 1e-6),
    ("bwdiatmax", "bwd_iat_max_s", 1e-6),
    ("fwdpshflags", "fwd_psh", 1.0),
    ("bwdpshflags", "bwd_psh", 1.0),
    ("fwdurgflags", "fwd_urg", 1.0),
    ("bwdurgflags", "bwd_urg", 1.0),
    // UNSW-NB15.
    ("sport", "src_port", 1.0),
    ("dsport", "dst_port", 1.0),
    ("proto", "protocol", 1.0),
    ("dur", "duration_s", 1.0),
    ("spkts", "fwd_packets", 1.0),
    ("dpkts", "bwd_packets", 1.0),
    ("sbytes", "fwd_bytes", 1.0),
    ("dbytes", "bwd_bytes", 1.0),
    ("smeansz", "fwd_size_mean", 1.0),
    ("dmeansz", "bwd_size_mean", 1.0),
    ("sintpkt", "fwd_iat_mean_s", 1e-3),
    ("dintpkt", "bwd_iat_mean_s", 1e-3),
    // NSL-KDD and KDD Cup 99.
    ("duration", "duration_s", 1.0),
    ("protocoltype", "protocol", 1.0),
    ("srcbytes", "fwd_bytes", 1.0),
    ("dstbytes", "bwd_bytes", 1.0),
];

fn silver_name(csv_name: &str) -> Option<(&'static str, f64)> {
    let key: String = csv_name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    KNOWN_COLUMNS
        .iter()
        .find(|(alias, _, _)| *alias == key)
        .map(|(_, silver, factor)| (*silver, *factor))
}

/// IANA protocol numbers of the names flow CSVs use.
fn protocol_number(name: &str) -> Option<u32> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "icmp6" | "ipv6-icmp" | "icmpv6" => 58,
        "ospf" => 89,
        "sctp" => 132,
        other => return other.parse().ok(),
    })
}

/// An identity column in SILVER's type: addresses as text, ports and
/// protocol as numbers (protocol names mapped to their numbers; what is
/// not a number is left empty).
fn identity_column(silver: &str, column: &Column) -> Result<Column, FlowError> {
    let text = as_text(column)?;
    let values = text.str().expect("cast to str");
    let out = match silver {
        "src_ip" | "dst_ip" => return Ok(text.with_name(silver.into())),
        "protocol" => values
            .iter()
            .map(|v| v.and_then(protocol_number))
            .collect::<Vec<Option<u32>>>(),
        _ => values
            .iter()
            .map(|v| {
                let v = v?.trim();
                match v.strip_prefix("0x") {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => v.parse::<f64>().ok().map(|f| f as u32),
                }
            })
            .collect(),
    };
    Ok(Column::new(silver.into(), out))
}

/// The label column, named `label`: from `label`, `class` or `attack_cat`.
/// With both `attack_cat` and a 0/1 `label` (UNSW-NB15), the attack
/// category where there is one, else `normal` or `attack` from the flag.
fn label_column(frame: &DataFrame) -> Result<Option<Column>, FlowError> {
    let find = |wanted: &str| {
        frame
            .columns()
            .iter()
            .find(|c| c.name().trim().eq_ignore_ascii_case(wanted))
    };
    let as_text = |c: &Column| -> Result<Vec<Option<String>>, FlowError> {
        let t = as_text(c)?;
        Ok(t.str()
            .expect("cast to str")
            .iter()
            .map(|v| v.map(|s| s.trim().to_string()))
            .collect())
    };
    let category = find("attack_cat").map(as_text).transpose()?;
    let flag = find("label")
        .or_else(|| find("class"))
        .map(as_text)
        .transpose()?;
    let labels: Vec<Option<String>> = match (category, flag) {
        (None, None) => return Ok(None),
        (Some(only), None) | (None, Some(only)) => only,
        (Some(category), Some(flag)) => category
            .into_iter()
            .zip(flag)
            .map(|(c, f)| match c.filter(|c| !c.is_empty()) {
                Some(c) => Some(c),
                None => f.map(|f| {
                    if matches!(f.as_str(), "0" | "normal" | "Normal") {
                        "normal"
                    } else {
                        "attack"
                    }
                    .into()
                }),
            })
            .collect(),
    };
    Ok(Some(Column::new(LABEL.into(), labels)))
}

/// A text column in which most values are numbers is a numeric column with
/// a typo, not a text column.
fn check_not_half_numeric(name: &str, values: &StringChunked) -> Result<(), FlowError> {
    let non_empty: Vec<(usize, &str)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.filter(|s| !s.trim().is_empty()).map(|s| (i, s)))
        .collect();
    let numbers = non_empty.iter().filter(|(_, s)| is_number(s)).count();
    if numbers * 2 > non_empty.len()
        && let Some((row, value)) = non_empty.iter().find(|(_, s)| !is_number(s))
    {
        return Err(FlowError::NotANumber {
            column: name.to_string(),
            row: *row,
            value: value.chars().take(40).collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_columns_become_features_and_the_label_is_kept_apart() {
        let csv = b"duration,bytes,proto,Class\n1.5,100,tcp,normal\n2,300,udp,attack\n";
        let t = FlowTable::from_csv(csv).unwrap();
        assert_eq!(
            t.features,
            ["duration_s", "bytes"],
            "NSL-KDD's duration is SILVER's duration_s"
        );
        assert!(
            t.text.is_empty(),
            "proto is the protocol, an identity column: {:?}",
            t.text
        );
        assert_eq!(
            t.frame.column("protocol").unwrap().u32().unwrap().get(0),
            Some(6)
        );
        assert!(t.labelled);
        assert_eq!(
            t.labels().unwrap(),
            [Some("normal".into()), Some("attack".into())]
        );
        assert_eq!(t.flow_ids(), [0, 1]);
        let m = t.feature_matrix().unwrap();
        assert_eq!(m.row(1).to_vec(), [2.0, 300.0]);
    }

    #[test]
    fn malformed_csv_is_named_precisely() {
        let err = FlowTable::from_csv(b"a,b\n1,2\n3,oops\n5,6\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"b\"") && err.contains("row 1") && err.contains("oops"),
            "{err}"
        );

        let err = FlowTable::from_csv(b"a,b\n1,2\n3,\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"b\"") && err.contains("row 1"), "{err}");

        let err = FlowTable::from_csv(b"a,b\n1,2\n3,4,5,6\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("CSV could not be parsed"), "{err}");

        assert!(matches!(
            FlowTable::from_csv(b"a,b\n"),
            Err(FlowError::NoRows)
        ));
        assert!(matches!(
            FlowTable::from_csv(b"host,label\nx,y\n"),
            Err(FlowError::NoFeatures(_))
        ));
        assert!(matches!(
            FlowTable::from_csv(b"flow_id,b\n1,2\n"),
            Err(FlowError::Reserved(_))
        ));
    }

    #[test]
    fn cicflowmeter_columns_take_silver_names_and_units() {
        let csv = b" Source IP, Source Port, Destination IP, Destination Port, Protocol, Flow Duration, Total Fwd Packets, Total Backward Packets, Fwd IAT Mean, Bwd Packets/s, Label\n10.0.0.1,40000,10.0.0.2,80,6,2500000,5,3,125000,1.5,BENIGN\n10.0.0.9,40001,10.0.0.2,22,6,1000,1,0,0,0,SSH-Patator\n";
        let t = FlowTable::from_csv(csv).unwrap();
        assert_eq!(
            t.features,
            [
                "duration_s",
                "fwd_packets",
                "bwd_packets",
                "fwd_iat_mean_s",
                "Bwd Packets/s"
            ]
        );
        let m = t.feature_matrix().unwrap();
        assert_eq!(m.row(0).to_vec(), [2.5, 5.0, 3.0, 0.125, 1.5]);
        assert_eq!(t.labels().unwrap()[1].as_deref(), Some("SSH-Patator"));
        let ports = t.frame.column("dst_port").unwrap().u32().unwrap().get(1);
        assert_eq!(ports, Some(22));
        assert_eq!(
            t.frame.column("src_ip").unwrap().str().unwrap().get(0),
            Some("10.0.0.1")
        );
    }

    #[test]
    fn unsw_nb15_labels_come_from_the_category_and_the_flag() {
        let csv = b"srcip,sport,dstip,dsport,proto,dur,sbytes,dbytes,spkts,dpkts,sintpkt,attack_cat,Label\n59.166.0.0,1390,149.171.126.6,53,udp,0.001,132,164,2,2,0.5,,0\n175.45.176.3,0x000b,149.171.126.18,80,tcp,2.5,1000,200,10,4,250,Exploits,1\n175.45.176.3,7,149.171.126.18,80,ospf,1,1,1,1,1,1,,1\n";
        let t = FlowTable::from_csv(csv).unwrap();
        assert_eq!(
            t.labels().unwrap(),
            [
                Some("normal".into()),
                Some("Exploits".into()),
                Some("attack".into())
            ]
        );
        assert!(
            !t.features.iter().any(|f| f.eq_ignore_ascii_case("label")),
            "the 0/1 flag is not a feature"
        );
        assert_eq!(
            t.frame.column("src_port").unwrap().u32().unwrap().get(1),
            Some(11),
            "hex port"
        );
        assert_eq!(
            t.frame.column("protocol").unwrap().u32().unwrap().get(0),
            Some(17)
        );
        assert_eq!(
            t.frame.column("protocol").unwrap().u32().unwrap().get(2),
            Some(89)
        );
        let m = t.feature_matrix().unwrap();
        let iat = t
            .features
            .iter()
            .position(|f| f == "fwd_iat_mean_s")
            .unwrap();
        assert_eq!(m[[1, iat]], 0.25, "milliseconds to seconds");
    }

    #[test]
    fn nsl_kdd_columns_map_where_they_correspond() {
        let csv = b"duration,protocol_type,service,flag,src_bytes,dst_bytes,count,label,difficulty\n0,tcp,http,SF,215,45076,1,normal,21\n2,udp,private,SF,105,146,9,neptune,15\n";
        let t = FlowTable::from_csv(csv).unwrap();
        assert_eq!(
            t.features,
            [
                "duration_s",
                "fwd_bytes",
                "bwd_bytes",
                "count",
                "difficulty"
            ]
        );
        assert_eq!(t.text, ["service", "flag"]);
        assert_eq!(
            t.frame.column("protocol").unwrap().u32().unwrap().get(1),
            Some(17)
        );
        assert_eq!(t.labels().unwrap()[1].as_deref(), Some("neptune"));
    }

    #[test]
    fn a_csv_wider_or_longer_than_the_limits_is_refused_before_parsing() {
        let header: Vec<String> = (0..100_000).map(|i| format!("c{i}")).collect();
        let row = vec!["1"; 100_000].join(",");
        let wide = format!("{}\n{row}\n", header.join(","));
        let err = FlowTable::from_csv(wide.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                FlowError::TooManyColumns {
                    columns: 100_000,
                    limit: 10_000
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("NADIR_MAX_COLUMNS"), "{err}");
        // Within a higher limit it is read.
        let roomy = TextLimits {
            columns: 100_000,
            ..TextLimits::default()
        };
        let t = FlowTable::from_csv_within(wide.as_bytes(), roomy).unwrap();
        assert_eq!(t.features.len(), 100_000);

        let long = format!("a,b\n1,2\n3,\"{}\"\n", "4".repeat(2 << 20));
        let err = FlowTable::from_csv(long.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                FlowError::LineTooLong {
                    line: 3,
                    limit: 1_048_576,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("NADIR_MAX_LINE_BYTES"), "{err}");
        // Quoted delimiters are not columns.
        assert_eq!(count_fields(b"a,\"b,c\",d", b','), 3);
    }

    #[test]
    fn non_finite_features_are_rejected() {
        let err = FlowTable::from_csv(b"a,b\n1,2\n3,inf\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("non-finite") && err.contains("\"b\""), "{err}");
    }
}
