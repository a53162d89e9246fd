//! What a RAW object holds, as ingest detected it by content and every
//! later stage reads it: `pcap`, `pcapng+gzip`, `csv`, ... on the wire and
//! in manifests, a type everywhere else.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A RAW object's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// libpcap, microsecond timestamps (either byte order).
    Pcap,
    /// libpcap, nanosecond timestamps (either byte order).
    PcapNs,
    Pcapng,
    /// Zeek's tab-separated log with its `#separator` header.
    ZeekTsv,
    /// JSON lines (Zeek's JSON logs among them).
    JsonLines,
    /// Text with a delimited header row: a flow CSV.
    Csv,
    /// Flows already: a Parquet file (`nadir flows` output, a SILVER partition).
    Parquet,
}

impl Format {
    pub const ALL: [Format; 7] = [
        Format::Pcap,
        Format::PcapNs,
        Format::Pcapng,
        Format::ZeekTsv,
        Format::JsonLines,
        Format::Csv,
        Format::Parquet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Pcap => "pcap",
            Format::PcapNs => "pcap-ns",
            Format::Pcapng => "pcapng",
            Format::ZeekTsv => "zeek-tsv",
            Format::JsonLines => "json-lines",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }

    /// A packet capture: read by the flow meter, streamed.
    pub fn is_capture(self) -> bool {
        matches!(self, Format::Pcap | Format::PcapNs | Format::Pcapng)
    }

    /// A Zeek conn.log.
    pub fn is_zeek(self) -> bool {
        matches!(self, Format::ZeekTsv | Format::JsonLines)
    }

    /// Whether its flows can carry a `<key>.labels.csv` ground truth (flow
    /// tables carry their labels in a column).
    pub fn takes_sidecar(self) -> bool {
        self.is_capture() || self.is_zeek()
    }
}

/// A detected format, and whether it came gzip-compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Detected {
    pub format: Format,
    pub gzip: bool,
}

impl Detected {
    pub fn plain(format: Format) -> Self {
        Detected {
            format,
            gzip: false,
        }
    }
}

impl fmt::Display for Detected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.format.name())?;
        if self.gzip {
            f.write_str("+gzip")?;
        }
        Ok(())
    }
}

impl FromStr for Detected {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, gzip) = match s.strip_suffix("+gzip") {
            Some(name) => (name, true),
            None => (s, false),
        };
        let format = Format::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown RAW format {s:?} (known: {}, each optionally +gzip)",
                    Format::ALL.map(Format::name).join(", ")
                )
            })?;
        Ok(Detected { format, gzip })
    }
}

impl Serialize for Detected {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Detected {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_travel_as_their_names() {
        for format in Format::ALL {
            for gzip in [false, true] {
                let d = Detected { format, gzip };
                let json = serde_json::to_string(&d).unwrap();
                assert_eq!(serde_json::from_str::<Detected>(&json).unwrap(), d);
                assert_eq!(d.to_string().parse::<Detected>().unwrap(), d);
            }
        }
        assert_eq!(
            "pcapng+gzip".parse::<Detected>().unwrap(),
            Detected {
                format: Format::Pcapng,
                gzip: true
            }
        );
        let err = serde_json::from_str::<Detected>("\"pdf\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown RAW format \"pdf\""),
            "{err}"
        );
    }
}
