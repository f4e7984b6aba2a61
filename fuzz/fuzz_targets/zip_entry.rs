//! extract-core's streaming zip reader (extract-psd's) on arbitrary bytes: it never panics or hangs, its output
//! does not depend on how the download is cut into chunks, and what it accepts the central
//! directory check can judge.

#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;

use extract_core::zipentry::{self, EntryDecoder, verify_central_directory};

/// Inflated bytes kept per run: a bomb stops here, as the CSV cap stops it in extract-psd.
const OUTPUT_BYTES_MAX: usize = 8 << 20;

fn stream(data: &[u8], chunk: usize) -> Result<(Option<zipentry::EntryHeader>, Vec<u8>), String> {
    let mut decoder = EntryDecoder::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        decoder
            .feed(piece, &mut |bytes| {
                anyhow::ensure!(out.len() + bytes.len() <= OUTPUT_BYTES_MAX, "output cap");
                out.extend_from_slice(bytes);
                Ok(())
            })
            .map_err(|e| format!("{e:#}"))?;
    }
    decoder.finish().map_err(|e| format!("{e:#}"))?;
    Ok((decoder.header().cloned(), out))
}

fuzz_target!(|input: &[u8]| {
    let Some((&seed, data)) = input.split_first() else {
        return;
    };
    let whole = stream(data, data.len().max(1));
    let chunked = stream(data, usize::from(seed) % 64 + 1);
    match (&whole, &chunked) {
        (Ok((_, a)), Ok((_, b))) => assert_eq!(a, b, "chunking changed the content"),
        (Err(_), Err(_)) => {}
        // The output cap may trip at a different point, nothing else may differ.
        (a, b) => assert!(
            format!("{a:?}{b:?}").contains("output cap"),
            "chunking changed the verdict: {a:?} vs {b:?}"
        ),
    }
    if let Ok((Some(header), out)) = whole {
        let _ = verify_central_directory(
            Cursor::new(data),
            &header,
            crc32fast::hash(&out),
            out.len() as u64,
        );
    }
});
