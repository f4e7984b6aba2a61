//! The PSD CSV validator on arbitrary bytes: it never panics, and how the input is cut into
//! chunks never changes its verdict (the download hands it blocks of any size).

#![no_main]

use libfuzzer_sys::fuzz_target;
use psd_format::{CsvSummary, CsvValidator, ValidationError};

fn validate(data: &[u8], cuts: &[usize]) -> Result<CsvSummary, ValidationError> {
    let mut v = CsvValidator::new();
    let mut at = 0;
    for &cut in cuts {
        let end = (at + cut).min(data.len());
        v.feed(&data[at..end])?;
        at = end;
    }
    v.feed(&data[at..])?;
    v.finish()
}

fuzz_target!(|input: &[u8]| {
    // The first byte chooses the chunking: sizes 1..=16 repeated, so every boundary moves.
    let Some((&seed, data)) = input.split_first() else {
        return;
    };
    let whole = validate(data, &[]);
    let step = usize::from(seed % 16) + 1;
    let cuts = vec![step; data.len() / step + 1];
    let chunked = validate(data, &cuts);
    assert_eq!(whole, chunked, "chunks of {step} bytes change the verdict");
    if let Ok(summary) = whole {
        assert_eq!(summary.bytes, data.len() as u64);
        let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
        assert!(
            summary.rows <= lines,
            "{} rows from {lines} line ends",
            summary.rows
        );
    }
});
