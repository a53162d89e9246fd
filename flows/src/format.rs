//! Format detection by content.
//!
//! A capture's file name is whatever a sensor or a person chose; its first
//! bytes are not. Gzip is looked through, so `capture.pcap.gz` is `pcap+gzip`.
//! Only the first [`SNIFF_LEN`] bytes are looked at: a text whose first
//! line runs past them (a CSV header of 100 000 columns) is judged by the
//! start of that line, and its reader then holds it to the line and column
//! limits ([`crate::csv::TextLimits`]).
//! The formats themselves are `nadir_contract::format` (they travel in
//! messages and manifests).

use std::io::Read;

pub use nadir_contract::format::{Detected, Format};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("the object is empty")]
    Empty,
    #[error(
        "unrecognised content (first bytes: {0}): expected a pcap or pcapng capture, a Zeek log, JSON lines, a CSV with a header row or a flows Parquet file, optionally gzip-compressed"
    )]
    Unknown(String),
    #[error("gzip stream is corrupt: {0}")]
    Gzip(String),
}

const SNIFF: usize = 64 * 1024;

/// How many leading bytes of an object [`detect`] needs.
pub const SNIFF_LEN: usize = SNIFF;

/// Detects the format of `bytes` (an object, or its first [`SNIFF_LEN`]
/// bytes) from their content.
pub fn detect(bytes: &[u8]) -> Result<Detected, FormatError> {
    if bytes.is_empty() {
        return Err(FormatError::Empty);
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        // `bytes` may be only the start of the object: decompress what is
        // there, and accept an early end once something came out.
        let mut head = Vec::with_capacity(SNIFF);
        let mut decoder = flate2::read::MultiGzDecoder::new(bytes).take(SNIFF as u64);
        let mut chunk = [0u8; 8192];
        loop {
            match decoder.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
                Err(_) if !head.is_empty() => break,
                Err(e) => return Err(FormatError::Gzip(e.to_string())),
            }
        }
        if head.is_empty() {
            return Err(FormatError::Gzip("no data inside".into()));
        }
        return sniff(&head).map(|format| Detected { format, gzip: true });
    }
    sniff(&bytes[..bytes.len().min(SNIFF)]).map(|format| Detected {
        format,
        gzip: false,
    })
}

fn sniff(head: &[u8]) -> Result<Format, FormatError> {
    match head.get(..4) {
        Some(b"PAR1") => return Ok(Format::Parquet),
        Some([0xd4, 0xc3, 0xb2, 0xa1]) | Some([0xa1, 0xb2, 0xc3, 0xd4]) => return Ok(Format::Pcap),
        Some([0x4d, 0x3c, 0xb2, 0xa1]) | Some([0xa1, 0xb2, 0x3c, 0x4d]) => {
            return Ok(Format::PcapNs);
        }
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => return Ok(Format::Pcapng),
        _ => {}
    }
    let unknown = || {
        FormatError::Unknown(
            head.iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
    };
    // Text formats: the head must be UTF-8 (a multi-byte character may be cut
    // at the end) with no control characters but tab, CR and LF.
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap(),
        Err(_) => return Err(unknown()),
    };
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    {
        return Err(unknown());
    }
    let text = text.trim_start_matches('\u{feff}');
    let first = text.lines().next().unwrap_or("").trim();
    if first.starts_with("#separator") {
        return Ok(Format::ZeekTsv);
    }
    // A first line longer than the window: the head is all of it that was
    // read. It is judged by its start; the reader of the whole object
    // holds its lines to NADIR_MAX_LINE_BYTES.
    let cut = head.len() >= SNIFF && !text.contains('\n');
    if first.starts_with('{') && (first.ends_with('}') || cut) {
        return Ok(Format::JsonLines);
    }
    let delimited = first.contains(',') || first.contains(';') || first.contains('\t');
    if delimited && (cut || text.lines().nth(1).is_some()) {
        return Ok(Format::Csv);
    }
    Err(unknown())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn captures_are_known_by_their_magic_numbers() {
        let pcap_le = [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        let pcap_be = [0xa1, 0xb2, 0xc3, 0xd4, 0, 2, 0, 4];
        let pcap_ns = [0x4d, 0x3c, 0xb2, 0xa1, 2, 0, 4, 0];
        let pcapng = [0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0];
        assert_eq!(detect(&pcap_le).unwrap().format, Format::Pcap);
        assert_eq!(detect(&pcap_be).unwrap().format, Format::Pcap);
        assert_eq!(detect(&pcap_ns).unwrap().format, Format::PcapNs);
        assert_eq!(detect(&pcapng).unwrap().format, Format::Pcapng);
        assert_eq!(detect(&gzip(&pcapng)).unwrap().to_string(), "pcapng+gzip");
        assert_eq!(detect(b"PAR1\x15\x04").unwrap().format, Format::Parquet);
    }

    #[test]
    fn text_formats_are_known_by_their_first_line() {
        assert_eq!(
            detect(b"a,b,label\n1,2,normal\n").unwrap().format,
            Format::Csv
        );
        assert_eq!(
            detect(b"#separator \\x09\n#fields\tts\n").unwrap().format,
            Format::ZeekTsv
        );
        assert_eq!(
            detect(b"{\"ts\":1}\n{\"ts\":2}\n").unwrap().format,
            Format::JsonLines
        );
        assert_eq!(
            detect(&gzip(b"x,y\n1,2\n")).unwrap().to_string(),
            "csv+gzip"
        );
    }

    #[test]
    fn a_first_line_longer_than_the_window_is_judged_by_its_start() {
        let header: Vec<String> = (0..100_000).map(|i| format!("c{i}")).collect();
        let wide = format!("{},label\n1,normal\n", header.join(","));
        assert!(wide.len() > SNIFF_LEN);
        assert_eq!(detect(wide.as_bytes()).unwrap().format, Format::Csv);
        assert_eq!(
            detect(&wide.as_bytes()[..SNIFF_LEN]).unwrap().format,
            Format::Csv
        );
        assert_eq!(
            detect(&gzip(wide.as_bytes())).unwrap().to_string(),
            "csv+gzip"
        );
        let long_json = format!("{{\"ts\":1,\"x\":\"{}\"}}\n", "a".repeat(SNIFF_LEN));
        assert_eq!(
            detect(long_json.as_bytes()).unwrap().format,
            Format::JsonLines
        );
        // Prose without a delimiter stays unknown, however long.
        assert!(detect(" word".repeat(SNIFF_LEN).as_bytes()).is_err());
    }

    #[test]
    fn names_do_not_matter_and_garbage_is_named() {
        assert_eq!(detect(b""), Err(FormatError::Empty));
        let elf = [0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0];
        let err = detect(&elf).unwrap_err().to_string();
        assert!(err.contains("7f 45 4c 46"), "{err}");
        assert!(detect(b"just one line of prose").is_err());
        assert!(matches!(
            detect(&[0x1f, 0x8b, 8, 0, 1, 2]),
            Err(FormatError::Gzip(_))
        ));
    }
}
