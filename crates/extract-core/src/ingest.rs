//! The ingest pipeline: raw bytes in (a zip of one entry, or the content itself), a verified
//! landing gzip out, in bounded memory. The extractor's [`ContentValidator`] checks the content.
//!
//! ```text
//! push(raw) ─▶ inflate ─┬─▶ validate (SHA-256, CRC-32, the extractor's ContentValidator)
//!   (caller)   (+ tee to  └─▶ compress ×N (libdeflate, one gzip member per block) ─▶ write (in order)
//!              .zip temp;
//!              a plain body is cut into blocks as it is)
//! ```
//!
//! Every queue is bounded, so a slow stage slows the download instead of growing memory. The
//! landing gzip is a series of gzip members, one per [`BLOCK_BYTES`] block, which every gzip
//! reader (gzip, zcat, DuckDB, flate2's `MultiGzDecoder`) reads as one stream.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use anyhow::{Context, anyhow, ensure};
use landing_store::{ContentAddress, LandingStore, TempFile};
use sha2::{Digest, Sha256};

use crate::limits::{
    BLOCK_BYTES, BLOCKS_QUEUED_MAX, COMPRESS_THREADS_MAX, GZIP_LEVEL, RAW_CHUNKS_QUEUED_MAX,
};
use crate::zipentry::{EntryDecoder, EntryHeader, verify_central_directory};

/// Checks an extractor's content as it streams past, block by block, before anything lands.
pub trait ContentValidator: Send {
    /// Checks the next piece of the content, cut anywhere; an error is bad data (nothing
    /// lands, and the download is not retried).
    fn feed(&mut self, block: &[u8]) -> anyhow::Result<()>;
    /// The content ended: checks what only the end can tell; returns its data rows.
    fn finish(self: Box<Self>) -> anyhow::Result<u64>;
}

/// How the content arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// A zip whose first entry is the content; its central directory is checked afterwards.
    Zip,
    /// The body is the content.
    Plain,
}

/// Makes the validator of one ingest (one per attempt).
pub type ValidatorFactory = Arc<dyn Fn() -> Box<dyn ContentValidator> + Send + Sync>;

/// An extractor's format: the container and a validator for the content.
#[derive(Clone)]
pub struct Format {
    pub container: Container,
    pub validator: ValidatorFactory,
    /// The flag setting the content cap, named in the error of content over it.
    pub cap_flag: &'static str,
}

/// The content's size and data rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentSummary {
    /// Data rows, as the validator counts them.
    pub rows: u64,
    /// Bytes of the content (decompressed).
    pub bytes: u64,
}

type Block = Arc<Vec<u8>>;

/// Why an ingest failed: bad input (never worth retrying) or a local fault.
#[derive(Debug)]
pub enum IngestError {
    /// The bytes are not valid content (the validator, the zip, a cap).
    Data(anyhow::Error),
    /// A local problem: disk full, cannot write, a thread died.
    Local(anyhow::Error),
    /// This stage stopped because another one did; that one's error is the cause.
    Stopped,
}

impl IngestError {
    pub fn into_inner(self) -> anyhow::Error {
        match self {
            IngestError::Data(e) | IngestError::Local(e) => e,
            IngestError::Stopped => anyhow!("pipeline stopped"),
        }
    }
}

/// A failed write to a temp file, saying plainly when the disk is full (or a quota or the
/// file size limit is reached): that is not the upstream file's fault.
fn write_failed(e: io::Error, what: &str, path: &Path) -> IngestError {
    let cause = match e.kind() {
        io::ErrorKind::StorageFull => "disk full: ",
        io::ErrorKind::QuotaExceeded => "disk quota exceeded: ",
        io::ErrorKind::FileTooLarge => "file size limit reached (ulimit -f): ",
        _ => "",
    };
    IngestError::Local(anyhow!(e).context(format!("{cause}cannot write {what} {}", path.display())))
}

/// [`Ingest::push`] after the pipeline stopped; [`Ingest::finish`] says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineStopped;

/// What the inflater hands the validator: blocks, then `End` once the entry ended cleanly. A
/// queue that closes without `End` was cut off by a failure elsewhere, which is not a
/// truncated CSV.
enum ToValidate {
    Block(Block),
    End,
}

/// What a successful ingest produced: the landing gzip in `.tmp/`, verified.
pub struct Ingested {
    pub gzip: TempFile,
    pub address: ContentAddress,
    pub content: ContentSummary,
    /// Bytes downloaded (the zip, or the plain body).
    pub body_bytes: u64,
    pub gzip_bytes: u64,
}

struct InflateDone {
    /// The zip entry's header and the zip's temp copy (`None` for a plain body).
    zip: Option<(EntryHeader, TempFile)>,
    body_bytes: u64,
    content_bytes: u64,
}

struct Validated {
    sha256: [u8; 32],
    crc32: u32,
    content: ContentSummary,
}

pub struct Ingest {
    raw_tx: Option<SyncSender<Vec<u8>>>,
    inflater: Option<JoinHandle<Result<InflateDone, IngestError>>>,
    validator: Option<JoinHandle<Result<Validated, IngestError>>>,
    compressors: Vec<JoinHandle<Result<(), IngestError>>>,
    writer: Option<JoinHandle<Result<(u64, TempFile), IngestError>>>,
}

impl Ingest {
    /// Starts the pipeline's threads, writing temp files named `<temp_prefix>*` into
    /// `store`'s `.tmp/`.
    pub fn start(
        store: &LandingStore,
        temp_prefix: &str,
        format: &Format,
        content_bytes_max: u64,
        body_bytes_max: u64,
    ) -> Result<Ingest, IngestError> {
        let zip = match format.container {
            Container::Zip => Some(
                store
                    .create_temp(temp_prefix, ".zip.part")
                    .map_err(|e| IngestError::Local(e.into()))?,
            ),
            Container::Plain => None,
        };
        let gzip = store
            .create_temp(temp_prefix, ".csv.gzip.part")
            .map_err(|e| IngestError::Local(e.into()))?;
        let validator = (format.validator)();
        let caps = Caps {
            content_bytes_max,
            body_bytes_max,
            flag: format.cap_flag,
        };

        let (raw_tx, raw_rx) = sync_channel::<Vec<u8>>(RAW_CHUNKS_QUEUED_MAX);
        let (val_tx, val_rx) = sync_channel::<ToValidate>(BLOCKS_QUEUED_MAX);
        let (job_tx, job_rx) = sync_channel::<(u64, Block)>(BLOCKS_QUEUED_MAX);
        let (out_tx, out_rx) = sync_channel::<(u64, Vec<u8>)>(BLOCKS_QUEUED_MAX * 2);
        let job_rx = Arc::new(Mutex::new(job_rx));

        let threads = thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, COMPRESS_THREADS_MAX);
        let spawn = |name: &str| thread::Builder::new().name(format!("{temp_prefix}-{name}"));
        let local = |e: std::io::Error| {
            IngestError::Local(anyhow!(e).context("cannot start pipeline thread"))
        };

        let compressors = (0..threads)
            .map(|i| {
                let (rx, tx) = (Arc::clone(&job_rx), out_tx.clone());
                spawn(&format!("deflate{i}"))
                    .spawn(move || compress_loop(&rx, &tx))
                    .map_err(local)
            })
            .collect::<Result<Vec<_>, _>>()?;
        drop(out_tx);
        let writer = spawn("write")
            .spawn(move || write_loop(&out_rx, gzip))
            .map_err(local)?;
        let validator = spawn("validate")
            .spawn(move || validate_loop(&val_rx, validator))
            .map_err(local)?;
        let inflater = spawn("inflate")
            .spawn(move || inflate_loop(&raw_rx, zip, &val_tx, &job_tx, caps))
            .map_err(local)?;
        Ok(Ingest {
            raw_tx: Some(raw_tx),
            inflater: Some(inflater),
            validator: Some(validator),
            compressors,
            writer: Some(writer),
        })
    }

    /// Hands raw zip bytes to the pipeline, waiting while it is full. Fails when the pipeline
    /// has stopped (its error is returned by [`Ingest::finish`]).
    pub fn push(&mut self, chunk: Vec<u8>) -> Result<(), PipelineStopped> {
        let tx = self.raw_tx.as_ref().expect("push after finish");
        tx.send(chunk).map_err(|_| PipelineStopped)
    }

    /// Ends the input, waits for every stage, verifies, and returns the landing gzip.
    pub fn finish(mut self) -> Result<Ingested, IngestError> {
        drop(self.raw_tx.take());
        let inflated = join(self.inflater.take());
        let validated = join(self.validator.take());
        let compressed: Vec<_> = self.compressors.drain(..).map(|h| join(Some(h))).collect();
        let written = join(self.writer.take());

        // A stage stops when its neighbour stops: the first data error, else the first local
        // fault, is the cause; the others say only `Stopped`.
        let mut errors: Vec<IngestError> = Vec::new();
        let inflated = inflated.map_err(|e| errors.push(e)).ok();
        let validated = validated.map_err(|e| errors.push(e)).ok();
        compressed
            .into_iter()
            .filter_map(Result::err)
            .for_each(|e| errors.push(e));
        let written = written.map_err(|e| errors.push(e)).ok();
        if let Some(i) = errors
            .iter()
            .position(|e| matches!(e, IngestError::Data(_)))
        {
            return Err(errors.swap_remove(i));
        }
        if let Some(i) = errors
            .iter()
            .position(|e| matches!(e, IngestError::Local(_)))
        {
            return Err(errors.swap_remove(i));
        }
        if !errors.is_empty() {
            return Err(IngestError::Local(anyhow!(
                "pipeline stopped without a cause (bug)"
            )));
        }
        let (inflated, validated, (gzip_bytes, mut gzip)) = (
            inflated.expect("no error"),
            validated.expect("no error"),
            written.expect("no error"),
        );

        // The zip's own index must agree with what was streamed.
        if let Some((header, zip)) = &inflated.zip {
            let zip_file = zip.try_clone().map_err(|e| IngestError::Local(e.into()))?;
            verify_central_directory(zip_file, header, validated.crc32, inflated.content_bytes)
                .map_err(IngestError::Data)?;
        }
        ensure_local(
            validated.content.bytes == inflated.content_bytes,
            "validator and inflater disagree on size",
        )?;

        // Read the landing gzip back and hash it again: its name must be its content.
        let reread = rehash_gzip(gzip.file()).map_err(IngestError::Local)?;
        ensure_local(
            reread == validated.sha256,
            "landing gzip read back does not hash to the downloaded content (bug or bad disk)",
        )?;
        Ok(Ingested {
            gzip,
            address: ContentAddress::from_digest(&validated.sha256),
            content: validated.content,
            body_bytes: inflated.body_bytes,
            gzip_bytes,
        })
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // An abandoned ingest (failed attempt) stops its threads; their temp files go with them.
        drop(self.raw_tx.take());
        let _ = join(self.inflater.take());
        let _ = join(self.validator.take());
        for h in self.compressors.drain(..) {
            let _ = join(Some(h));
        }
        let _ = join(self.writer.take());
    }
}

fn ensure_local(ok: bool, what: &str) -> Result<(), IngestError> {
    if ok {
        Ok(())
    } else {
        Err(IngestError::Local(anyhow!("{what}")))
    }
}

fn join<T>(handle: Option<JoinHandle<Result<T, IngestError>>>) -> Result<T, IngestError> {
    match handle {
        None => Err(IngestError::Local(anyhow!("pipeline stage already joined"))),
        Some(h) => h
            .join()
            .unwrap_or_else(|_| Err(IngestError::Local(anyhow!("pipeline thread panicked")))),
    }
}

/// A neighbouring stage hung up; the real cause is its own error.
fn stopped() -> IngestError {
    IngestError::Stopped
}

/// The caps of one ingest, and the flag that sets the content's.
#[derive(Clone, Copy)]
struct Caps {
    content_bytes_max: u64,
    body_bytes_max: u64,
    flag: &'static str,
}

fn inflate_loop(
    raw: &Receiver<Vec<u8>>,
    zip: Option<TempFile>,
    to_validate: &SyncSender<ToValidate>,
    to_compress: &SyncSender<(u64, Block)>,
    caps: Caps,
) -> Result<InflateDone, IngestError> {
    let Caps {
        content_bytes_max,
        body_bytes_max,
        flag,
    } = caps;
    // A zip is inflated and teed to its temp file; a plain body is the content.
    let mut zipped = match zip {
        Some(zip) => {
            let zip_path = zip.path().to_path_buf();
            let out = BufWriter::with_capacity(
                1 << 20,
                zip.try_clone().map_err(|e| IngestError::Local(e.into()))?,
            );
            Some((EntryDecoder::new(), zip, zip_path, out))
        }
        None => None,
    };
    let mut block = Vec::with_capacity(BLOCK_BYTES);
    let mut seq = 0u64;
    let mut body_bytes = 0u64;
    let mut content_bytes = 0u64;
    let dispatch = |block: Vec<u8>, seq: &mut u64| -> Result<(), IngestError> {
        let block = Arc::new(block);
        to_validate
            .send(ToValidate::Block(Arc::clone(&block)))
            .map_err(|_| stopped())?;
        to_compress.send((*seq, block)).map_err(|_| stopped())?;
        *seq += 1;
        Ok(())
    };
    let what = if zipped.is_some() {
        "decompressed CSV"
    } else {
        "download"
    };
    let mut pending: Option<IngestError> = None;
    for chunk in raw {
        body_bytes += chunk.len() as u64;
        if body_bytes > body_bytes_max {
            return Err(IngestError::Data(match zipped {
                Some(_) => anyhow!(
                    "download exceeds {body_bytes_max} bytes, more than a zip of a CSV within {flag} can be"
                ),
                None => anyhow!("download exceeds the cap of {body_bytes_max} bytes ({flag})"),
            }));
        }
        let mut sink = |data: &[u8]| -> anyhow::Result<()> {
            content_bytes += data.len() as u64;
            ensure!(
                content_bytes <= content_bytes_max,
                "{what} exceeds the cap of {content_bytes_max} bytes ({flag})"
            );
            let mut data = data;
            while !data.is_empty() {
                let n = (BLOCK_BYTES - block.len()).min(data.len());
                block.extend_from_slice(&data[..n]);
                data = &data[n..];
                if block.len() == BLOCK_BYTES {
                    let full = std::mem::replace(&mut block, Vec::with_capacity(BLOCK_BYTES));
                    if let Err(e) = dispatch(full, &mut seq) {
                        pending = Some(e);
                        anyhow::bail!("pipeline stopped");
                    }
                }
            }
            Ok(())
        };
        let fed = match &mut zipped {
            Some((decoder, _, zip_path, zip_out)) => {
                zip_out
                    .write_all(&chunk)
                    .map_err(|e| write_failed(e, "zip temp file", zip_path))?;
                decoder.feed(&chunk, &mut sink)
            }
            None => sink(&chunk),
        };
        if let Err(e) = fed {
            return Err(pending.take().unwrap_or(IngestError::Data(e)));
        }
    }
    let zip = match zipped {
        Some((decoder, mut zip, zip_path, mut zip_out)) => {
            decoder.finish().map_err(IngestError::Data)?;
            zip_out
                .flush()
                .map_err(|e| write_failed(e, "zip temp file", &zip_path))?;
            drop(zip_out);
            let header = decoder
                .header()
                .cloned()
                .expect("a finished entry has a header");
            zip.file()
                .seek(SeekFrom::Start(0))
                .map_err(|e| IngestError::Local(e.into()))?;
            Some((header, zip))
        }
        None => None,
    };
    if !block.is_empty() {
        dispatch(block, &mut seq)?;
    }
    to_validate.send(ToValidate::End).map_err(|_| stopped())?;
    Ok(InflateDone {
        zip,
        body_bytes,
        content_bytes,
    })
}

fn validate_loop(
    blocks: &Receiver<ToValidate>,
    mut validator: Box<dyn ContentValidator>,
) -> Result<Validated, IngestError> {
    let mut sha = Sha256::new();
    let mut crc = crc32fast::Hasher::new();
    let mut bytes = 0u64;
    loop {
        match blocks.recv() {
            Ok(ToValidate::Block(block)) => {
                sha.update(block.as_slice());
                crc.update(&block);
                bytes += block.len() as u64;
                validator.feed(&block).map_err(IngestError::Data)?;
            }
            Ok(ToValidate::End) => break,
            // Cut off mid-entry: the content's end is unknown, so is whether it is valid.
            Err(_) => return Err(stopped()),
        }
    }
    let rows = validator.finish().map_err(IngestError::Data)?;
    Ok(Validated {
        sha256: sha.finalize().into(),
        crc32: crc.finalize(),
        content: ContentSummary { rows, bytes },
    })
}

fn compress_loop(
    jobs: &Mutex<Receiver<(u64, Block)>>,
    out: &SyncSender<(u64, Vec<u8>)>,
) -> Result<(), IngestError> {
    let level = libdeflater::CompressionLvl::new(GZIP_LEVEL)
        .expect("GZIP_LEVEL is a valid libdeflate level");
    let mut compressor = libdeflater::Compressor::new(level);
    loop {
        let job = {
            let rx = jobs
                .lock()
                .map_err(|_| IngestError::Local(anyhow!("compression queue poisoned")))?;
            rx.recv()
        };
        let Ok((seq, block)) = job else { return Ok(()) };
        let mut member = vec![0; compressor.gzip_compress_bound(block.len())];
        let n = compressor
            .gzip_compress(&block, &mut member)
            .map_err(|e| IngestError::Local(anyhow!("gzip compression failed: {e:?}")))?;
        member.truncate(n);
        drop(block);
        if out.send((seq, member)).is_err() {
            return Err(stopped());
        }
    }
}

fn write_loop(
    members: &Receiver<(u64, Vec<u8>)>,
    mut gzip: TempFile,
) -> Result<(u64, TempFile), IngestError> {
    let gzip_path = gzip.path().to_path_buf();
    let write_err = |e: io::Error| write_failed(e, "landing temp file", &gzip_path);
    let mut out = BufWriter::with_capacity(1 << 20, gzip.try_clone().map_err(write_err)?);
    let mut next = 0u64;
    let mut early: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut bytes = 0u64;
    for (seq, member) in members {
        early.insert(seq, member);
        while let Some(member) = early.remove(&next) {
            out.write_all(&member).map_err(write_err)?;
            bytes += member.len() as u64;
            next += 1;
        }
    }
    if !early.is_empty() {
        return Err(stopped());
    }
    out.flush().map_err(write_err)?;
    drop(out);
    gzip.file().seek(SeekFrom::Start(0)).map_err(write_err)?;
    Ok((bytes, gzip))
}

/// SHA-256 of the decompressed content of a (multi-member) gzip file.
pub fn rehash_gzip(file: &mut File) -> anyhow::Result<[u8; 32]> {
    file.seek(SeekFrom::Start(0))?;
    let mut decoder =
        flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 20, &*file));
    let mut sha = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = decoder
            .read(&mut buf)
            .context("cannot read back landing gzip")?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    Ok(sha.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_a_quota_or_the_size_limit_is_named_as_such() {
        let path = Path::new("/landing/.tmp/extract-psd-x.csv.gzip.part");
        for (errno, start) in [
            (
                28,
                "disk full: cannot write landing temp file /landing/.tmp/",
            ), // ENOSPC
            (122, "disk quota exceeded: cannot write landing temp file"), // EDQUOT
            (27, "file size limit reached (ulimit -f): cannot write"),    // EFBIG
            (5, "cannot write landing temp file"),                        // EIO
        ] {
            let e = write_failed(
                io::Error::from_raw_os_error(errno),
                "landing temp file",
                path,
            );
            let IngestError::Local(e) = e else {
                panic!("a write failure is local, never a data error")
            };
            let text = format!("{e:#}");
            assert!(text.starts_with(start), "errno {errno}: {text}");
        }
    }
}
