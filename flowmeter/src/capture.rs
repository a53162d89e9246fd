//! Reading pcap and pcapng captures, plain or gzip-compressed, from any
//! reader through a fixed-size buffer, or in place from bytes already in
//! memory (a memory-mapped file), without copying them.
//!
//! Each packet is handed to a callback as a [`Frame`] borrowing the buffer
//! (or the bytes), so a capture of any size is read in constant memory.
//! Both ways read the same bytes to the same frames and the same errors. A corrupt block is
//! an error naming its byte offset, in words rather than the parser's
//! terms; a capture cut off in its last record ends normally with
//! [`CaptureReader::truncated_tail`] set, one cut inside its file header is
//! an error that says so. A gzip capture may expand at most
//! `max_gzip_ratio` times the compressed bytes read (decompression bombs).
//! Timestamps are computed with checked arithmetic: an interface whose
//! offset or resolution no clock has is an error, a packet stamped beyond
//! what nanoseconds since 1970 hold (the year 2262) is skipped and counted
//! ([`CaptureReader::unrepresentable_timestamps`]).

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pcap_parser::nom::IResult;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapBlock, Linktype, PcapBlockOwned, PcapError, PcapHeader};

/// Where a capture's bytes come from.
pub enum Source<'r> {
    /// A stream (a file, an S3 body, a pipe), read through a fixed buffer.
    Reader(Box<dyn Read + Send + 'r>),
    /// Bytes already in memory, parsed where they lie. A gzip capture is
    /// gunzipped through a buffer as a stream is.
    Bytes(&'r [u8]),
}

impl<'r> From<&'r [u8]> for Source<'r> {
    fn from(bytes: &'r [u8]) -> Self {
        Source::Bytes(bytes)
    }
}

impl<'r> Source<'r> {
    /// A stream as a source.
    pub fn reader(reader: impl Read + Send + 'r) -> Self {
        Source::Reader(Box::new(reader))
    }
}

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
    #[error("the capture is empty (0 bytes)")]
    Empty,
    #[error("not a pcap or pcapng capture (first bytes: {0})")]
    NotACapture(String),
    #[error(
        "the capture ends inside its file header ({bytes} bytes; a {what} takes {needed}): the object was cut short"
    )]
    TruncatedHeader {
        bytes: usize,
        needed: usize,
        what: &'static str,
    },
    #[error("corrupt capture at byte offset {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    /// The capture's own bytes failed to arrive (the source's error, not
    /// the content's).
    #[error("reading the capture failed at byte offset {offset}: {reason}")]
    Read { offset: u64, reason: String },
    #[error("corrupt capture at byte offset {offset} of its gunzipped bytes: {reason}")]
    Gzip { offset: u64, reason: String },
    #[error(
        "the first {compressed} gzip bytes of the capture expand more than {ratio}-fold (NADIR_MAX_GZIP_RATIO): a decompression bomb, or raise the setting"
    )]
    GzipBomb { compressed: u64, ratio: u64 },
    #[error("packet for pcapng interface {0}, which the capture never described")]
    UnknownInterface(u32),
}

impl CaptureError {
    /// Whether the error is the source's (a read that failed), not the
    /// capture's content.
    pub fn is_read(&self) -> bool {
        matches!(self, CaptureError::Read { .. })
    }
}

struct Interface {
    linktype: i32,
    /// Units per second of this interface's timestamps.
    resolution: u64,
    /// `if_tsoffset`, in nanoseconds.
    offset_ns: i64,
}

/// What went wrong under the parser, kept for the error message:
/// pcap-parser reduces every read error to `ReadError`.
#[derive(Debug, Clone)]
enum Fault {
    /// The source failed (an I/O error, not the content).
    Read(String),
    /// The gzip stream is truncated or corrupt.
    Gzip(String),
    /// The gzip stream expands past the ratio.
    Bomb { compressed: u64, ratio: u64 },
}

/// The first fault seen, shared by the readers under the parser.
#[derive(Debug, Clone, Default)]
struct Faults(Arc<Mutex<Option<Fault>>>);

impl Faults {
    fn note(&self, fault: Fault) {
        let mut first = self.0.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(fault);
    }

    fn take(&self) -> Option<Fault> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The capture's bytes as they arrive: counted (the compressed side of a
/// gzip capture), with a failed read remembered as the source's fault.
struct Arriving<R> {
    inner: R,
    read: Arc<AtomicU64>,
    faults: Faults,
}

impl<R: Read> Read for Arriving<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.read.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                self.faults.note(Fault::Read(e.to_string()));
                Err(e)
            }
        }
    }
}

/// A gzip capture gunzipped, at most `ratio` times the compressed bytes
/// read so far (and at least [`BOMB_FLOOR`]); a gzip error is remembered
/// as the content's fault.
struct Gunzipped<R> {
    decoder: flate2::read::MultiGzDecoder<R>,
    compressed: Arc<AtomicU64>,
    ratio: u64,
    out: u64,
    faults: Faults,
}

/// Bytes a gzip capture may always expand to, whatever its ratio: the
/// first blocks of a small capture may compress very well.
const BOMB_FLOOR: u64 = 1 << 20;

impl<R: BufRead> Read for Gunzipped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.decoder.read(buf) {
            Ok(n) => {
                self.out = self.out.saturating_add(n as u64);
                let compressed = self.compressed.load(Ordering::Relaxed);
                if self.out > compressed.saturating_mul(self.ratio).max(BOMB_FLOOR) {
                    self.faults.note(Fault::Bomb {
                        compressed,
                        ratio: self.ratio,
                    });
                    return Err(std::io::Error::other("decompression bomb"));
                }
                Ok(n)
            }
            Err(e) => {
                // A source error came through the decoder: `Arriving`
                // noted it first, and the first fault is the one kept.
                self.faults.note(Fault::Gzip(match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => {
                        "the gzip stream is truncated: it ends inside a compressed block".into()
                    }
                    _ => format!("the gzip stream is corrupt ({e})"),
                }));
                Err(e)
            }
        }
    }
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
    /// pcapng: whether the current section is big-endian.
    big_endian: bool,
    /// Packets skipped because their time does not fit in an `i64` of
    /// nanoseconds.
    unrepresentable: u64,
    faults: Faults,
}

/// The first bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// How many times its size a gzip capture may expand by default.
pub const DEFAULT_GZIP_RATIO: u64 = 1000;

/// Leading bytes read before the parser sees the capture (its file header
/// must fit).
const HEAD: usize = 64 * 1024;

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
    /// Opens a capture, looking through gzip if the stream is compressed
    /// (at most [`DEFAULT_GZIP_RATIO`] times its size).
    pub fn new<R: Read + Send + 'r>(reader: R) -> Result<Self, CaptureError> {
        Self::with_gzip_ratio(reader, DEFAULT_GZIP_RATIO)
    }

    /// Opens a capture from `source`: bytes in memory are parsed in place
    /// unless they are gzip; gzip may expand at most `max_ratio` times.
    pub fn open(source: Source<'r>, max_ratio: u64) -> Result<Self, CaptureError> {
        match source {
            Source::Reader(reader) => Self::with_gzip_ratio(reader, max_ratio),
            Source::Bytes(bytes) if bytes.starts_with(&GZIP_MAGIC) => {
                Self::with_gzip_ratio(bytes, max_ratio)
            }
            Source::Bytes(bytes) => {
                let inner = InPlace::new(bytes)
                    .ok_or_else(|| header_error(&bytes[..bytes.len().min(HEAD)]))?;
                Ok(Self::with_parser(Box::new(inner), Faults::default()))
            }
        }
    }

    fn with_parser(inner: Box<dyn PcapReaderIterator + Send + 'r>, faults: Faults) -> Self {
        CaptureReader {
            inner,
            legacy: None,
            interfaces: Vec::new(),
            offset: 0,
            truncated: false,
            last_ts_ns: 0,
            big_endian: false,
            unrepresentable: 0,
            faults,
        }
    }

    /// Opens a capture, looking through gzip if the stream is compressed:
    /// the gunzipped bytes may be at most `max_ratio` times the compressed
    /// bytes read (`u64::MAX`: no limit).
    pub fn with_gzip_ratio<R: Read + Send + 'r>(
        reader: R,
        max_ratio: u64,
    ) -> Result<Self, CaptureError> {
        let faults = Faults::default();
        let compressed = Arc::new(AtomicU64::new(0));
        let mut buffered = BufReader::with_capacity(
            64 * 1024,
            Arriving {
                inner: reader,
                read: compressed.clone(),
                faults: faults.clone(),
            },
        );
        let read_error = |faults: &Faults, e: std::io::Error| match faults.take() {
            Some(fault) => fault_error(fault, 0),
            None => CaptureError::Read {
                offset: 0,
                reason: e.to_string(),
            },
        };
        let gzip = buffered
            .fill_buf()
            .map_err(|e| read_error(&faults, e))?
            .starts_with(&GZIP_MAGIC);
        let mut source: Box<dyn Read + Send + 'r> = if gzip {
            Box::new(Gunzipped {
                decoder: flate2::read::MultiGzDecoder::new(buffered),
                compressed,
                ratio: max_ratio,
                out: 0,
                faults: faults.clone(),
            })
        } else {
            Box::new(buffered)
        };
        // The file header, read whole (a source may hand out less per
        // read) so that a capture cut inside it can be told apart.
        let mut head = Vec::with_capacity(HEAD);
        (&mut source)
            .take(HEAD as u64)
            .read_to_end(&mut head)
            .map_err(|e| read_error(&faults, e))?;
        let inner =
            pcap_parser::create_reader(BUFFER, std::io::Cursor::new(head.clone()).chain(source))
                .map_err(|_| header_error(&head))?;
        Ok(Self::with_parser(inner, faults))
    }

    /// Packets skipped because their timestamp lies beyond what an `i64`
    /// of nanoseconds since 1970 holds (before 1678 or after 2262).
    pub fn unrepresentable_timestamps(&self) -> u64 {
        self.unrepresentable
    }

    /// The error of a read under the parser that failed: the fault noted
    /// on the way, or the parser's report in words.
    fn read_failed(&self, e: &PcapError<&'static [u8]>) -> CaptureError {
        match self.faults.take() {
            Some(fault) => fault_error(fault, self.offset),
            None => CaptureError::Read {
                offset: self.offset,
                reason: describe(e, self.inner.data(), self.legacy.is_some(), self.big_endian),
            },
        }
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
                            self.big_endian = header.is_bigendian();
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
                            // u32 seconds and fraction: at most about
                            // 4.3e18 ns, always within an i64.
                            Some(Frame {
                                ts_ns: b.ts_sec as i64 * 1_000_000_000 + frac,
                                linktype,
                                wire_len: b.origlen,
                                data: &b.data[..caplen],
                            })
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                            // A new section starts its own interface numbering.
                            self.interfaces.clear();
                            self.big_endian = shb.big_endian();
                            None
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            let number = self.interfaces.len();
                            let corrupt = |reason: String| CaptureError::Corrupt {
                                offset: self.offset,
                                reason: format!("pcapng interface {number}: {reason}"),
                            };
                            let resolution = ts_resolution(idb.if_tsresol).ok_or_else(|| {
                                corrupt(format!(
                                    "its timestamp resolution (if_tsresol {}, {} units per second) is one no clock has",
                                    idb.if_tsresol,
                                    if idb.if_tsresol & 0x80 == 0 {
                                        format!("10^{}", idb.if_tsresol)
                                    } else {
                                        format!("2^{}", idb.if_tsresol & 0x7f)
                                    }
                                ))
                            })?;
                            let offset_ns =
                                idb.if_tsoffset.checked_mul(1_000_000_000).ok_or_else(|| {
                                    corrupt(format!(
                                        "its timestamp offset (if_tsoffset {} s) puts its packets outside the years 1678 to 2262",
                                        idb.if_tsoffset
                                    ))
                                })?;
                            self.interfaces.push(Interface {
                                linktype: idb.linktype.0,
                                resolution,
                                offset_ns,
                            });
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            let iface = self
                                .interfaces
                                .get(epb.if_id as usize)
                                .ok_or(CaptureError::UnknownInterface(epb.if_id))?;
                            let units = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                            match units_to_ns(units, iface.resolution)
                                .and_then(|ns| ns.checked_add(iface.offset_ns))
                            {
                                Some(ts_ns) => {
                                    let caplen = (epb.caplen as usize).min(epb.data.len());
                                    Some(Frame {
                                        ts_ns,
                                        linktype: iface.linktype,
                                        wire_len: epb.origlen,
                                        data: &epb.data[..caplen],
                                    })
                                }
                                None => {
                                    self.unrepresentable += 1;
                                    None
                                }
                            }
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
                    // No shift here: the refill before the next read shifts once.
                    self.inner.consume_noshift(size);
                    self.offset += size as u64;
                    if delivered {
                        return Ok(Some(()));
                    }
                }
                Err(PcapError::Eof) => return Ok(None),
                Err(PcapError::Incomplete(_)) => {
                    let before = self.inner.position();
                    self.refill()?;
                    if self.inner.position() == before && self.inner.reader_exhausted() {
                        return self.ended_inside_block();
                    }
                }
                Err(PcapError::UnexpectedEof) => return self.ended_inside_block(),
                Err(PcapError::BufferTooSmall) => {
                    let bigger = (self.inner.data().len() * 2).max(BUFFER * 2);
                    if bigger > MAX_BLOCK || !self.inner.grow(bigger) {
                        return Err(self.block_too_large());
                    }
                    self.refill()?;
                }
                Err(e) => {
                    let e = e.to_owned_vec();
                    return Err(match self.faults.take() {
                        Some(fault) => fault_error(fault, self.offset),
                        None => CaptureError::Corrupt {
                            offset: self.offset,
                            reason: describe(
                                &e,
                                self.inner.data(),
                                self.legacy.is_some(),
                                self.big_endian,
                            ),
                        },
                    });
                }
            }
        }
    }

    /// The capture ended inside a block: a truncated tail, unless the
    /// block claims more than a block may take (then it is corrupt, as it
    /// is when more of the capture follows it).
    fn ended_inside_block(&mut self) -> Result<Option<()>, CaptureError> {
        let data = self.inner.data();
        let word = |at: usize| {
            let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
            Some(if self.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            })
        };
        // A pcap record gives its captured length after 8 bytes of time, a
        // pcapng block its whole length after its type.
        let claimed = if self.legacy.is_some() {
            word(8).map(|caplen| caplen as usize + 16)
        } else {
            word(4).map(|length| length as usize)
        };
        if claimed.is_some_and(|claimed| claimed >= MAX_BLOCK) {
            return Err(self.block_too_large());
        }
        self.truncated = true;
        Ok(None)
    }

    /// The block at the parser's position claims more than [`MAX_BLOCK`].
    fn block_too_large(&self) -> CaptureError {
        CaptureError::Corrupt {
            offset: self.offset,
            reason: describe(
                &PcapError::BufferTooSmall,
                self.inner.data(),
                self.legacy.is_some(),
                self.big_endian,
            ),
        }
    }

    /// Reads more of the capture into the parser's buffer.
    fn refill(&mut self) -> Result<(), CaptureError> {
        match self.inner.refill() {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = e.to_owned_vec();
                Err(self.read_failed(&e))
            }
        }
    }
}

type LegacyParse = fn(&[u8]) -> IResult<&[u8], LegacyPcapBlock<'_>, PcapError<&[u8]>>;

/// pcap-parser's reader interface over bytes in memory: blocks are parsed
/// where they lie, by the functions its own readers use, and nothing is
/// copied. The whole capture is "in the buffer" from the start: a block
/// that runs past the end is where the capture ends.
struct InPlace<'a> {
    bytes: &'a [u8],
    position: usize,
    format: InPlaceFormat,
}

enum InPlaceFormat {
    /// A legacy pcap: its header (handed out first) and its record parser.
    Legacy {
        header: Option<PcapHeader>,
        parse: LegacyParse,
    },
    /// pcapng: the current section's byte order.
    Ng { big_endian: bool },
}

impl<'a> InPlace<'a> {
    /// The parser for `bytes` if they start a capture.
    fn new(bytes: &'a [u8]) -> Option<Self> {
        // The test the stream's reader makes on its first buffer, so both
        // refuse the same headers.
        let first = &bytes[..bytes.len().min(BUFFER)];
        let format = if pcap_parser::parse_sectionheaderblock(first).is_ok() {
            InPlaceFormat::Ng { big_endian: false }
        } else {
            let (_, header) = pcap_parser::parse_pcap_header(first).ok()?;
            let parse: LegacyParse = if header.is_modified_format() {
                pcap_parser::parse_pcap_frame_modified
            } else if header.is_bigendian() {
                pcap_parser::parse_pcap_frame_be
            } else {
                pcap_parser::parse_pcap_frame
            };
            InPlaceFormat::Legacy {
                header: Some(header),
                parse,
            }
        };
        Some(InPlace {
            bytes,
            position: 0,
            format,
        })
    }
}

impl PcapReaderIterator for InPlace<'_> {
    fn next(&mut self) -> Result<(usize, PcapBlockOwned<'_>), PcapError<&[u8]>> {
        let data = &self.bytes[self.position..];
        let parsed = match &mut self.format {
            InPlaceFormat::Legacy { header, parse } => {
                if let Some(header) = header.take() {
                    return Ok((header.size(), PcapBlockOwned::from(header)));
                }
                if data.is_empty() {
                    return Err(PcapError::Eof);
                }
                parse(data).map(|(rest, block)| (rest, PcapBlockOwned::from(block)))
            }
            InPlaceFormat::Ng { big_endian } => {
                if data.is_empty() {
                    return Err(PcapError::Eof);
                }
                let parse = if *big_endian {
                    pcap_parser::parse_block_be
                } else {
                    pcap_parser::parse_block_le
                };
                parse(data).map(|(rest, block)| {
                    if let Block::SectionHeader(shb) = &block {
                        *big_endian = shb.big_endian();
                    }
                    (rest, PcapBlockOwned::from(block))
                })
            }
        };
        match parsed {
            Ok((rest, block)) => {
                prefetch(rest);
                Ok((data.len() - rest.len(), block))
            }
            Err(pcap_parser::nom::Err::Error(e) | pcap_parser::nom::Err::Failure(e)) => Err(e),
            Err(pcap_parser::nom::Err::Incomplete(_)) => Err(PcapError::UnexpectedEof),
        }
    }

    fn consume(&mut self, offset: usize) {
        self.consume_noshift(offset);
    }

    fn consume_noshift(&mut self, offset: usize) {
        self.position = (self.position + offset).min(self.bytes.len());
    }

    fn consumed(&self) -> usize {
        self.position
    }

    fn refill(&mut self) -> Result<(), PcapError<&[u8]>> {
        Ok(())
    }

    fn position(&self) -> usize {
        self.position
    }

    fn grow(&mut self, _new_size: usize) -> bool {
        false
    }

    fn data(&self) -> &[u8] {
        &self.bytes[self.position..]
    }

    fn reader_exhausted(&self) -> bool {
        true
    }
}

/// Asks the processor to start loading the next block's first two cache
/// lines (its header and the packet's headers) while this one is metered:
/// blocks lie a packet apart, too far for the hardware's own prefetching.
#[inline]
fn prefetch(next: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let at = next.as_ptr().cast::<i8>();
        // SAFETY: SSE is part of x86_64, and a prefetch never faults or
        // reads into the program, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(at);
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = next;
}

/// A fault under the parser as the capture's error, at `offset`.
fn fault_error(fault: Fault, offset: u64) -> CaptureError {
    match fault {
        Fault::Read(reason) => CaptureError::Read { offset, reason },
        Fault::Gzip(reason) => CaptureError::Gzip { offset, reason },
        Fault::Bomb { compressed, ratio } => CaptureError::GzipBomb { compressed, ratio },
    }
}

/// Units per second of a pcapng `if_tsresol`: 10^n, or 2^n with the top
/// bit set; `None` when no `u64` holds it.
fn ts_resolution(tsresol: u8) -> Option<u64> {
    let exponent = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(exponent)
    } else {
        2u64.checked_pow(exponent)
    }
}

/// `units` of `resolution` per second as nanoseconds; `None` past an `i64`.
fn units_to_ns(units: u64, resolution: u64) -> Option<i64> {
    if resolution == 1_000_000_000 {
        return i64::try_from(units).ok();
    }
    i64::try_from(units as u128 * 1_000_000_000 / resolution.max(1) as u128).ok()
}

/// Why the parser refused the start of a capture, from its first bytes.
fn header_error(head: &[u8]) -> CaptureError {
    const PCAP: [[u8; 4]; 4] = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
    ];
    const PCAPNG: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
    const PCAP_HEADER: usize = 24;
    const SHB_MIN: usize = 28;
    let n = head.len();
    let starts = |magic: &[u8]| head.starts_with(&magic[..n.min(4)]);
    if n == 0 {
        return CaptureError::Empty;
    }
    let cut = |needed: usize, what: &'static str| CaptureError::TruncatedHeader {
        bytes: n,
        needed,
        what,
    };
    let corrupt = |reason: String| CaptureError::Corrupt { offset: 0, reason };
    if PCAP.iter().any(|m| starts(m)) {
        if n < PCAP_HEADER {
            return cut(PCAP_HEADER, "pcap file header");
        }
        return corrupt("the pcap file header is not valid".into());
    }
    if starts(&PCAPNG) {
        if n < 12 {
            return cut(SHB_MIN, "pcapng section header block");
        }
        let word = |at: usize, big: bool| {
            let b = [head[at], head[at + 1], head[at + 2], head[at + 3]];
            if big {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let big = match word(8, false) {
            pcap_parser::BOM_MAGIC => false,
            m if m.swap_bytes() == pcap_parser::BOM_MAGIC => true,
            _ => {
                return corrupt(
                    "the pcapng section header has no valid byte-order magic (1a2b3c4d)".into(),
                );
            }
        };
        let length = word(4, big) as usize;
        if length < SHB_MIN || !length.is_multiple_of(4) {
            return corrupt(format!(
                "the pcapng section header block gives its length as {length} bytes (at least {SHB_MIN}, a multiple of 4)"
            ));
        }
        if n < length {
            if n < HEAD {
                return cut(length, "pcapng section header block");
            }
            return corrupt(format!(
                "the pcapng section header block is {length} bytes, more than the {} KiB read for a file header",
                HEAD >> 10
            ));
        }
        return corrupt(
            "the pcapng section header block is malformed: its options do not fit its length, or its trailing length differs from its leading one".into(),
        );
    }
    CaptureError::NotACapture(hex_head(head))
}

/// The block the parser stopped at, in words.
fn block_name(data: &[u8], legacy: bool, big_endian: bool) -> String {
    if legacy {
        return "a packet record".into();
    }
    let Some(b) = data.get(..4) else {
        return "a block".into();
    };
    let b = [b[0], b[1], b[2], b[3]];
    let kind = if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    };
    match kind {
        pcap_parser::SHB_MAGIC => "a section header block".into(),
        pcap_parser::IDB_MAGIC => "an interface description block".into(),
        2 => "an (obsolete) packet block".into(),
        pcap_parser::SPB_MAGIC => "a simple packet block".into(),
        pcap_parser::NRB_MAGIC => "a name resolution block".into(),
        pcap_parser::ISB_MAGIC => "an interface statistics block".into(),
        pcap_parser::EPB_MAGIC => "an enhanced packet block".into(),
        pcap_parser::SJE_MAGIC => "a systemd journal export block".into(),
        pcap_parser::DSB_MAGIC => "a decryption secrets block".into(),
        pcap_parser::CB_MAGIC | pcap_parser::DCB_MAGIC => "a custom block".into(),
        pcap_parser::PIB_MAGIC => "a process information block".into(),
        other => format!("a block of type {other:#010x}"),
    }
}

/// A pcap-parser error in words: what was wrong with the bytes at the
/// parser's position (`data`), never the library's own terms.
fn describe(e: &PcapError<&'static [u8]>, data: &[u8], legacy: bool, big_endian: bool) -> String {
    let block = block_name(data, legacy, big_endian);
    match e {
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => match kind {
            pcap_parser::nom::error::ErrorKind::Verify => format!(
                "{block} has inconsistent lengths: too short for its type, or its trailing length differs from its leading one"
            ),
            pcap_parser::nom::error::ErrorKind::Tag => {
                format!("{block} is not the block expected here")
            }
            _ => format!("{block} is malformed: a field runs past the length the block gives"),
        },
        PcapError::HeaderNotRecognized => {
            format!("{block} is where a pcap or pcapng file header should be")
        }
        PcapError::ReadError => "the capture's bytes could not be read".into(),
        PcapError::Eof | PcapError::UnexpectedEof | PcapError::Incomplete(_) => {
            format!("the capture ends inside {block}")
        }
        PcapError::BufferTooSmall => format!(
            "{block} claims more than the {} MiB a block may take",
            MAX_BLOCK >> 20
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolutions_and_times_are_checked_not_overflowed() {
        assert_eq!(ts_resolution(6), Some(1_000_000));
        assert_eq!(ts_resolution(19), Some(10u64.pow(19)));
        assert_eq!(ts_resolution(20), None);
        assert_eq!(ts_resolution(0x80 | 10), Some(1024));
        assert_eq!(ts_resolution(0x80 | 63), Some(1 << 63));
        assert_eq!(ts_resolution(255), None);
        assert_eq!(units_to_ns(1_500_000, 1_000_000), Some(1_500_000_000));
        assert_eq!(units_to_ns(u64::MAX, 1_000_000_000), None);
        assert_eq!(units_to_ns(u64::MAX, 1), None);
        assert_eq!(units_to_ns(u64::MAX, 1 << 63), Some(1_999_999_999));
    }

    #[test]
    fn a_refused_header_is_told_by_its_first_bytes() {
        let ng = |length: u32, bom: u32| {
            let mut v = vec![0x0a, 0x0d, 0x0d, 0x0a];
            v.extend(length.to_le_bytes());
            v.extend(bom.to_le_bytes());
            v
        };
        assert!(matches!(header_error(b""), CaptureError::Empty));
        assert!(matches!(
            header_error(&[0xd4, 0xc3]),
            CaptureError::TruncatedHeader {
                bytes: 2,
                needed: 24,
                ..
            }
        ));
        assert!(matches!(
            header_error(&ng(64, pcap_parser::BOM_MAGIC)),
            CaptureError::TruncatedHeader {
                bytes: 12,
                needed: 64,
                ..
            }
        ));
        let bad_bom = header_error(&ng(28, 7)).to_string();
        assert!(bad_bom.contains("byte-order magic"), "{bad_bom}");
        let bad_length = header_error(&ng(13, pcap_parser::BOM_MAGIC)).to_string();
        assert!(
            bad_length.contains("gives its length as 13 bytes"),
            "{bad_length}"
        );
        assert!(matches!(
            header_error(b"hello, world"),
            CaptureError::NotACapture(_)
        ));
    }
}
