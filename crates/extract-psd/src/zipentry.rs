//! Streaming reader of the first entry of a zip, as its bytes arrive, so that inflating,
//! hashing and validating overlap the download. The central directory at the end of the zip is
//! checked afterwards ([`verify_central_directory`]) against what was streamed.

use std::fs::File;
use std::io::BufReader;

use anyhow::{Context, bail, ensure};
use flate2::{Decompress, FlushDecompress, Status};

const LOCAL_HEADER_SIGNATURE: u32 = 0x0403_4b50;
const LOCAL_HEADER_BYTES: usize = 30;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATE: u16 = 8;
const FLAG_ENCRYPTED: u16 = 1;
const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
/// Inflate output per call; the caller copies it into blocks.
const SCRATCH_BYTES: usize = 256 * 1024;

enum Phase {
    Header(Vec<u8>),
    Deflate(Box<Decompress>),
    Stored { remaining: u64 },
    Done,
}

/// The local header of the streamed entry.
#[derive(Debug, Clone)]
pub struct EntryHeader {
    pub name: String,
}

pub struct EntryDecoder {
    phase: Phase,
    header: Option<EntryHeader>,
    scratch: Vec<u8>,
}

impl Default for EntryDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl EntryDecoder {
    pub fn new() -> Self {
        EntryDecoder {
            phase: Phase::Header(Vec::with_capacity(1024)),
            header: None,
            scratch: vec![0; SCRATCH_BYTES],
        }
    }

    pub fn header(&self) -> Option<&EntryHeader> {
        self.header.as_ref()
    }

    /// Feeds raw zip bytes; calls `out` with each piece of the entry's content.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut dyn FnMut(&[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        while !input.is_empty() {
            match &mut self.phase {
                Phase::Header(buf) => {
                    let before = buf.len();
                    buf.extend_from_slice(input);
                    match parse_local_header(buf)? {
                        None => {
                            ensure!(
                                buf.len() <= 64 * 1024 + LOCAL_HEADER_BYTES,
                                "zip local header is too long"
                            );
                            return Ok(());
                        }
                        Some((header, header_len, phase)) => {
                            let consumed = header_len - before;
                            input = &input[consumed..];
                            self.header = Some(header);
                            self.phase = phase;
                        }
                    }
                }
                Phase::Stored { remaining } => {
                    let n = (*remaining).min(input.len() as u64) as usize;
                    out(&input[..n])?;
                    *remaining -= n as u64;
                    input = &input[n..];
                    if *remaining == 0 {
                        self.phase = Phase::Done;
                    }
                }
                Phase::Deflate(inflater) => {
                    let before_in = inflater.total_in();
                    let before_out = inflater.total_out();
                    let status = inflater
                        .decompress(input, &mut self.scratch, FlushDecompress::None)
                        .context("zip entry is not valid deflate data")?;
                    let consumed = (inflater.total_in() - before_in) as usize;
                    let produced = (inflater.total_out() - before_out) as usize;
                    input = &input[consumed..];
                    if produced > 0 {
                        out(&self.scratch[..produced])?;
                    }
                    match status {
                        Status::StreamEnd => self.phase = Phase::Done,
                        Status::Ok => {}
                        Status::BufError => {
                            ensure!(
                                consumed > 0 || produced > 0,
                                "zip entry deflate stream made no progress"
                            );
                        }
                    }
                }
                Phase::Done => return Ok(()),
            }
        }
        Ok(())
    }

    /// Checks that the entry ended; call when the input is exhausted.
    pub fn finish(&self) -> anyhow::Result<()> {
        match self.phase {
            Phase::Done => Ok(()),
            Phase::Header(ref b) if b.is_empty() => bail!("download is empty"),
            Phase::Header(_) => bail!("download ends inside the zip local header (truncated?)"),
            _ => bail!("zip entry is truncated: its data ends before the compressed stream does"),
        }
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// A short, printable rendering of what a non-zip body starts with (an HTML error page...).
fn describe_start(buf: &[u8]) -> String {
    let head: String = String::from_utf8_lossy(&buf[..buf.len().min(60)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{:?}", head.trim())
}

fn parse_local_header(buf: &[u8]) -> anyhow::Result<Option<(EntryHeader, usize, Phase)>> {
    if buf.len() >= 4 && u32_at(buf, 0) != LOCAL_HEADER_SIGNATURE {
        bail!(
            "response is not a zip file: it starts with {}",
            describe_start(buf)
        );
    }
    if buf.len() < LOCAL_HEADER_BYTES {
        return Ok(None);
    }
    let flags = u16_at(buf, 6);
    let method = u16_at(buf, 8);
    let compressed = u32_at(buf, 18);
    let name_len = usize::from(u16_at(buf, 26));
    let extra_len = usize::from(u16_at(buf, 28));
    let total = LOCAL_HEADER_BYTES + name_len + extra_len;
    if buf.len() < total {
        return Ok(None);
    }
    let name = String::from_utf8_lossy(&buf[LOCAL_HEADER_BYTES..LOCAL_HEADER_BYTES + name_len])
        .into_owned();
    ensure!(
        flags & FLAG_ENCRYPTED == 0,
        "zip entry {name:?} is encrypted"
    );
    ensure!(
        name.to_ascii_lowercase().ends_with(".csv"),
        "zip entry {name:?} is not a CSV file (expected one entry named *.csv)"
    );
    let phase = match method {
        METHOD_DEFLATE => Phase::Deflate(Box::new(Decompress::new(false))),
        METHOD_STORED => {
            ensure!(
                flags & FLAG_DATA_DESCRIPTOR == 0 && compressed != u32::MAX,
                "zip entry {name:?} is stored with an unknown size, which cannot be streamed"
            );
            if compressed == 0 {
                Phase::Done
            } else {
                Phase::Stored {
                    remaining: u64::from(compressed),
                }
            }
        }
        other => bail!(
            "zip entry {name:?} uses compression method {other}; only deflate and stored are supported"
        ),
    };
    Ok(Some((EntryHeader { name }, total, phase)))
}

/// Checks the zip's central directory against what was streamed: exactly one entry, the one
/// streamed, with the CRC-32 and size that were computed.
pub fn verify_central_directory(
    zip_file: File,
    streamed: &EntryHeader,
    crc32: u32,
    size: u64,
) -> anyhow::Result<()> {
    let mut archive = zip::ZipArchive::new(BufReader::new(zip_file))
        .context("zip central directory is unreadable")?;
    ensure!(
        archive.len() == 1,
        "zip has {} entries, expected exactly one CSV",
        archive.len()
    );
    let entry = archive
        .by_index_raw(0)
        .context("zip central directory entry is unreadable")?;
    let name = entry
        .name()
        .context("zip central directory entry name is unreadable")?;
    ensure!(
        name == streamed.name && entry.header_start() == 0,
        "zip central directory names {name:?} at offset {}, but the data streamed was {:?} at offset 0",
        entry.header_start(),
        streamed.name
    );
    ensure!(
        entry.size() == size,
        "zip entry size is {} in the central directory but {size} bytes were decompressed",
        entry.size()
    );
    ensure!(
        entry.crc32() == crc32,
        "zip entry CRC-32 mismatch: central directory says {:08x}, content is {crc32:08x}",
        entry.crc32()
    );
    Ok(())
}
