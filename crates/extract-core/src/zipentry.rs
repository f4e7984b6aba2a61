//! Streaming reader of the first entry of a zip, as its bytes arrive, so that inflating,
//! hashing and validating overlap the download. The central directory at the end of the zip is
//! checked afterwards ([`verify_central_directory`]) against what was streamed.

use std::io::{BufReader, Read, Seek};

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
pub fn verify_central_directory<R: Read + Seek>(
    zip_file: R,
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

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use super::*;

    const CSV: &[u8] = b"Commodity_Code,Value\r\n0711100,1\r\n0711100,2\r\n";

    fn zip_with(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, content) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(content).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    fn stored(name: &str, content: &[u8]) -> Vec<u8> {
        zip_with(&[(name, content)], zip::CompressionMethod::Stored)
    }

    /// Where the first entry's content starts, from its local header.
    fn content_offset(zip: &[u8]) -> usize {
        LOCAL_HEADER_BYTES + usize::from(u16_at(zip, 26)) + usize::from(u16_at(zip, 28))
    }

    /// Streams `zip` in `chunk`-byte pieces, as the download hands them over.
    fn stream(zip: &[u8], chunk: usize) -> anyhow::Result<(EntryHeader, Vec<u8>)> {
        let mut decoder = EntryDecoder::new();
        let mut out = Vec::new();
        for piece in zip.chunks(chunk) {
            decoder.feed(piece, &mut |data| {
                out.extend_from_slice(data);
                Ok(())
            })?;
        }
        decoder.finish()?;
        Ok((decoder.header().cloned().unwrap(), out))
    }

    /// Everything ingest does with a zip: stream the entry, then check the central directory.
    fn read(zip: &[u8]) -> anyhow::Result<Vec<u8>> {
        let (header, out) = stream(zip, 7)?;
        verify_central_directory(
            Cursor::new(zip),
            &header,
            crc32fast::hash(&out),
            out.len() as u64,
        )?;
        Ok(out)
    }

    fn refusal(zip: &[u8]) -> String {
        format!("{:#}", read(zip).unwrap_err())
    }

    #[test]
    fn a_stored_entry_is_accepted_at_any_chunking() {
        let zip = stored("psd_alldata.csv", CSV);
        assert_eq!(u16_at(&zip, 8), METHOD_STORED, "the zip crate stored it");
        assert_eq!(u16_at(&zip, 6) & FLAG_DATA_DESCRIPTOR, 0);
        for chunk in [1, 2, 29, 30, 31, zip.len()] {
            let (header, out) = stream(&zip, chunk).unwrap();
            assert_eq!(out, CSV, "chunk {chunk}");
            assert_eq!(header.name, "psd_alldata.csv");
        }
        assert_eq!(read(&zip).unwrap(), CSV);
    }

    #[test]
    fn a_deflated_entry_is_accepted() {
        let big: Vec<u8> = CSV.iter().copied().cycle().take(1 << 20).collect();
        let zip = zip_with(&[("psd.CSV", &big)], zip::CompressionMethod::Deflated);
        assert_eq!(u16_at(&zip, 8), METHOD_DEFLATE);
        assert_eq!(read(&zip).unwrap(), big);
    }

    #[test]
    fn one_flipped_content_byte_is_refused_by_the_crc() {
        let mut zip = stored("psd_alldata.csv", CSV);
        let at = content_offset(&zip) + 25;
        zip[at] ^= 0x01;
        let err = refusal(&zip);
        assert!(
            err.starts_with("zip entry CRC-32 mismatch: central directory says"),
            "{err}"
        );
    }

    #[test]
    fn a_local_name_other_than_the_central_directorys_is_refused() {
        let mut zip = stored("psd_alldata.csv", CSV);
        zip[LOCAL_HEADER_BYTES..LOCAL_HEADER_BYTES + 3].copy_from_slice(b"xyz");
        let err = refusal(&zip);
        assert!(
            err.starts_with(
                "zip central directory names \"psd_alldata.csv\" at offset 0, but the data streamed was \"xyz_alldata.csv\""
            ),
            "{err}"
        );
    }

    #[test]
    fn an_unsupported_compression_method_is_refused() {
        let mut zip = stored("psd_alldata.csv", CSV);
        zip[8..10].copy_from_slice(&12u16.to_le_bytes()); // bzip2
        let err = refusal(&zip);
        assert_eq!(
            err,
            "zip entry \"psd_alldata.csv\" uses compression method 12; only deflate and stored are supported"
        );
    }

    #[test]
    fn two_entries_are_refused() {
        let zip = zip_with(
            &[("psd_alldata.csv", CSV), ("second.csv", CSV)],
            zip::CompressionMethod::Deflated,
        );
        assert_eq!(refusal(&zip), "zip has 2 entries, expected exactly one CSV");
    }

    #[test]
    fn a_size_other_than_the_central_directorys_is_refused() {
        // The local header promises one byte less than there is: the stream ends early.
        let mut zip = stored("psd_alldata.csv", CSV);
        let short = u32::try_from(CSV.len() - 1).unwrap();
        zip[18..22].copy_from_slice(&short.to_le_bytes());
        zip[22..26].copy_from_slice(&short.to_le_bytes());
        let err = refusal(&zip);
        assert!(
            err.starts_with(&format!(
                "zip entry size is {} in the central directory but {short} bytes were decompressed",
                CSV.len()
            )),
            "{err}"
        );
    }

    #[test]
    fn what_is_not_a_streamable_csv_entry_is_refused_by_its_own_check() {
        let html = b"<!DOCTYPE html><html><body>busy</body></html>".to_vec();
        let mut encrypted = stored("psd_alldata.csv", CSV);
        encrypted[6] |= FLAG_ENCRYPTED as u8;
        let mut descriptor = stored("psd_alldata.csv", CSV);
        descriptor[6] |= FLAG_DATA_DESCRIPTOR as u8;
        let zip = stored("psd_alldata.csv", CSV);
        let truncated_header = zip[..LOCAL_HEADER_BYTES + 4].to_vec();
        let truncated_data = zip[..content_offset(&zip) + 10].to_vec();
        let mut deflated = zip_with(&[("a.csv", CSV)], zip::CompressionMethod::Deflated);
        let d = content_offset(&deflated);
        deflated.truncate(d + 3);
        let mut long_header = stored("psd_alldata.csv", CSV)[..LOCAL_HEADER_BYTES].to_vec();
        long_header[26..28].copy_from_slice(&u16::MAX.to_le_bytes());
        long_header[28..30].copy_from_slice(&u16::MAX.to_le_bytes());
        long_header.extend(std::iter::repeat_n(b'a', 70 * 1024));
        for (zip, want) in [
            (
                html,
                "response is not a zip file: it starts with \"<!DOCTYPE html><html><body>busy</body></html>\"",
            ),
            (Vec::new(), "download is empty"),
            (
                stored("notes.txt", CSV),
                "zip entry \"notes.txt\" is not a CSV file (expected one entry named *.csv)",
            ),
            (encrypted, "zip entry \"psd_alldata.csv\" is encrypted"),
            (
                descriptor,
                "zip entry \"psd_alldata.csv\" is stored with an unknown size, which cannot be streamed",
            ),
            (
                truncated_header,
                "download ends inside the zip local header (truncated?)",
            ),
            (
                truncated_data,
                "zip entry is truncated: its data ends before the compressed stream does",
            ),
            (
                deflated,
                "zip entry is truncated: its data ends before the compressed stream does",
            ),
            (long_header, "zip local header is too long"),
        ] {
            let err = format!("{:#}", stream(&zip, 4096).unwrap_err());
            assert_eq!(err, want);
        }
    }

    #[test]
    fn a_central_directory_entry_elsewhere_than_the_streamed_header_is_refused() {
        // A decoy zip, then the real one: the streamed entry is the decoy's at offset 0, the
        // central directory (read from the end) is the real one's.
        let real = stored("psd_alldata.csv", CSV);
        let mut zip = stored("psd_alldata.csv", b"decoy");
        let shift = zip.len();
        zip.extend_from_slice(&real);
        assert_eq!(
            refusal(&zip),
            format!(
                "zip central directory names \"psd_alldata.csv\" at offset {shift}, but the data streamed was \"psd_alldata.csv\" at offset 0"
            )
        );
    }
}
