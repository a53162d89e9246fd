//! Reading pcap and pcapng captures, plain or gzip-compressed, from any
//! reader, through a fixed-size buffer.
//!
//! Each packet is handed to a callback as a [`Frame`] borrowing the buffer,
//! so a capture of any size is read in constant memory. A corrupt block is
//! an error naming its byte offset; a capture cut off in its last record
//! ends normally with [`CaptureReader::truncated_tail`] set.

use std::io::{BufRead, BufReader, Read};

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{Linktype, PcapBlockOwned, PcapError};

/// A captured frame: when, how it was framed, its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    pub linktype: i32,
    /// Bytes on the wire (may exceed `data.len()` when the snaplen cut it).
    pub wire_len: u32,
    pub data: &'a [u8],
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("not a pcap or pcapng capture (first bytes: {0})")]
    NotACapture(String),
    #[error("corrupt capture at byte offset {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("reading the capture failed at byte offset {offset}: {reason}")]
    Read { offset: u64, reason: String },
    #[error("packet for pcapng interface {0}, which the capture never described")]
    UnknownInterface(u32),
}

struct Interface {
    linktype: i32,
    /// Units per second of this interface's timestamps.
    resolution: u64,
    offset_s: i64,
}

/// A streaming capture reader.
pub struct CaptureReader<'r> {
    inner: Box<dyn PcapReaderIterator + Send + 'r>,
    /// Legacy pcap: link type and whether timestamps are nanoseconds.
    legacy: Option<(i32, bool)>,
    interfaces: Vec<Interface>,
    /// Bytes consumed so far (of the decompressed stream).
    offset: u64,
    truncated: bool,
    /// Time of the last timestamped packet, for simple packet blocks.
    last_ts_ns: i64,
}

const BUFFER: usize = 1 << 20;
/// Largest block accepted (pcapng allows any size; real ones are < 256 KiB).
const MAX_BLOCK: usize = 64 << 20;

fn hex_head(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl<'r> CaptureReader<'r> {
    /// Opens a capture, looking through gzip if the stream is compressed.
    pub fn new<R: Read + Send + 'r>(reader: R) -> Result<Self, CaptureError> {
        let mut buffered = BufReader::with_capacity(64 * 1024, reader);
        let head = buffered.fill_buf().map_err(|e| CaptureError::Read {
            offset: 0,
            reason: e.to_string(),
        })?;
        let source: Box<dyn Read + Send + 'r> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(buffered))
        } else {
            Box::new(buffered)
        };
        let mut peek = BufReader::with_capacity(64 * 1024, source);
        let head = peek
            .fill_buf()
            .map_err(|e| CaptureError::Read {
                offset: 0,
                reason: e.to_string(),
            })?
            .to_vec();
        let inner = pcap_parser::create_reader(BUFFER, peek)
            .map_err(|_| CaptureError::NotACapture(hex_head(&head)))?;
        Ok(CaptureReader {
            inner,
            legacy: None,
            interfaces: Vec::new(),
            offset: 0,
            truncated: false,
            last_ts_ns: 0,
        })
    }

    /// Bytes of the (decompressed) capture read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the capture ended in the middle of a record.
    pub fn truncated_tail(&self) -> bool {
        self.truncated
    }

    /// Hands the next packet to `f`; `None` at the end of the capture.
    pub fn next_packet(
        &mut self,
        mut f: impl FnMut(Frame<'_>),
    ) -> Result<Option<()>, CaptureError> {
        loop {
            match self.inner.next() {
                Ok((size, block)) => {
                    let frame = match block {
                        PcapBlockOwned::LegacyHeader(header) => {
                            self.legacy =
                                Some((header.network.0, header.is_nanosecond_precision()));
                            None
                        }
                        PcapBlockOwned::Legacy(b) => {
                            let (linktype, nanos) =
                                self.legacy.unwrap_or((Linktype::ETHERNET.0, false));
                            let frac = if nanos {
                                b.ts_usec as i64
                            } else {
                                b.ts_usec as i64 * 1000
                            };
                            let caplen = (b.caplen as usize).min(b.data.len());
                            Some(Frame {
                                ts_ns: b.ts_sec as i64 * 1_000_000_000 + frac,
                                linktype,
                                wire_len: b.origlen,
                                data: &b.data[..caplen],
                            })
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                            // A new section starts its own interface numbering.
                            self.interfaces.clear();
                            None
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            self.interfaces.push(Interface {
                                linktype: idb.linktype.0,
                                resolution: idb.ts_resolution().unwrap_or(1_000_000),
                                offset_s: idb.ts_offset(),
                            });
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            let iface = self
                                .interfaces
                                .get(epb.if_id as usize)
                                .ok_or(CaptureError::UnknownInterface(epb.if_id))?;
                            let units = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                            let ts_ns = iface.offset_s * 1_000_000_000
                                + units_to_ns(units, iface.resolution);
                            let caplen = (epb.caplen as usize).min(epb.data.len());
                            Some(Frame {
                                ts_ns,
                                linktype: iface.linktype,
                                wire_len: epb.origlen,
                                data: &epb.data[..caplen],
                            })
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            // No timestamp in a simple packet block: it keeps the
                            // time of the packet before it (0 if none).
                            let iface = self
                                .interfaces
                                .first()
                                .ok_or(CaptureError::UnknownInterface(0))?;
                            let len = (spb.origlen as usize).min(spb.data.len());
                            Some(Frame {
                                ts_ns: i64::MIN,
                                linktype: iface.linktype,
                                wire_len: spb.origlen,
                                data: &spb.data[..len],
                            })
                        }
                        PcapBlockOwned::NG(_) => None,
                    };
                    let delivered = match frame {
                        Some(mut frame) => {
                            if frame.ts_ns == i64::MIN {
                                frame.ts_ns = self.last_ts_ns;
                            }
                            self.last_ts_ns = frame.ts_ns;
                            f(frame);
                            true
                        }
                        None => false,
                    };
                    self.inner.consume(size);
                    self.offset += size as u64;
                    if delivered {
                        return Ok(Some(()));
                    }
                }
                Err(PcapError::Eof) => return Ok(None),
                Err(PcapError::Incomplete(_)) => {
                    let before = self.inner.position();
                    self.inner.refill().map_err(|e| CaptureError::Read {
                        offset: self.offset,
                        reason: format!("{e:?}"),
                    })?;
                    if self.inner.position() == before && self.inner.reader_exhausted() {
                        // The stream ended inside a record.
                        self.truncated = true;
                        return Ok(None);
                    }
                }
                Err(PcapError::UnexpectedEof) => {
                    self.truncated = true;
                    return Ok(None);
                }
                Err(PcapError::BufferTooSmall) => {
                    let bigger = (self.inner.data().len() * 2).max(BUFFER * 2);
                    if bigger > MAX_BLOCK || !self.inner.grow(bigger) {
                        return Err(CaptureError::Corrupt {
                            offset: self.offset,
                            reason: format!("a block larger than {} MiB", MAX_BLOCK >> 20),
                        });
                    }
                    self.inner.refill().map_err(|e| CaptureError::Read {
                        offset: self.offset,
                        reason: format!("{e:?}"),
                    })?;
                }
                Err(e) => {
                    return Err(CaptureError::Corrupt {
                        offset: self.offset,
                        reason: match e {
                            PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
                                format!("unparsable block ({kind:?})")
                            }
                            PcapError::HeaderNotRecognized => "header not recognized".into(),
                            other => format!("{other:?}"),
                        },
                    });
                }
            }
        }
    }
}

fn units_to_ns(units: u64, resolution: u64) -> i64 {
    if resolution == 1_000_000_000 {
        units as i64
    } else {
        ((units as u128 * 1_000_000_000) / resolution.max(1) as u128) as i64
    }
}
