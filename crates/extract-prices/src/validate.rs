//! The FRED CSV validator: what `fredgraph.csv?id=A,B` must look like before it lands.
//!
//! ```text
//! observation_date,PCOFFOTMUSDM,PCOFFROBUSDM
//! 1990-01-01,75.8,46.2
//! 1990-02-01,.,
//! ```
//!
//! - the header is exactly `observation_date` then the configured series, in order (a UTF-8
//!   BOM and CRLF line ends are allowed);
//! - every row has one field per header column; its date is `YYYY-MM-01` and later than the
//!   row before's; each value is a decimal number, or missing (empty, or `.` in older files);
//! - lines, rows and values are bounded ([`crate::limits`]), there is at least one row, and the
//!   last line ends with a line end (a body cut short mid-line is not a shorter file).

use anyhow::{anyhow, bail, ensure};
use extract_core::ContentValidator;

use crate::limits::{LINE_BYTES_MAX, ROWS_MAX, VALUE_BYTES_MAX};

/// The first column of FRED's CSV.
pub const DATE_COLUMN: &str = "observation_date";
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Streams a FRED CSV, cut anywhere, and checks it line by line.
pub struct FredValidator {
    /// The header expected, without line end.
    header: String,
    series: Vec<String>,
    /// The current line so far (it may span blocks).
    line: Vec<u8>,
    line_no: u64,
    rows: u64,
    last_month: Option<(u32, u32)>,
}

impl FredValidator {
    pub fn new(series: &[String]) -> FredValidator {
        FredValidator {
            header: expected_header(series),
            series: series.to_vec(),
            line: Vec::new(),
            line_no: 0,
            rows: 0,
            last_month: None,
        }
    }

    fn check_line(&mut self, raw: &[u8]) -> anyhow::Result<()> {
        self.line_no += 1;
        let n = self.line_no;
        let mut line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if n == 1 {
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        let text = std::str::from_utf8(line)
            .ok()
            .filter(|t| t.is_ascii())
            .ok_or_else(|| anyhow!("line {n}: not ASCII text: {}", shown(line)))?;
        if n == 1 {
            ensure!(
                text == self.header,
                "line 1: expected the header {:?}, found {}",
                self.header,
                shown(line)
            );
            return Ok(());
        }
        self.rows += 1;
        ensure!(
            self.rows <= ROWS_MAX,
            "line {n}: more than {ROWS_MAX} data rows"
        );
        let fields: Vec<&str> = text.split(',').collect();
        ensure!(
            fields.len() == self.series.len() + 1,
            "line {n}: {} fields, expected {} ({:?})",
            fields.len(),
            self.series.len() + 1,
            self.header
        );
        let month = parse_month(fields[0]).ok_or_else(|| {
            anyhow!(
                "line {n}: date {} is not YYYY-MM-01 (the first of a month)",
                shown(fields[0].as_bytes())
            )
        })?;
        if let Some(last) = self.last_month {
            ensure!(
                month > last,
                "line {n}: date {} does not follow {:04}-{:02}-01 (dates must increase)",
                fields[0],
                last.0,
                last.1
            );
        }
        self.last_month = Some(month);
        for (value, series) in fields[1..].iter().zip(&self.series) {
            ensure!(
                is_value(value),
                "line {n}: {series} value {} is not a number, empty or \".\"",
                shown(value.as_bytes())
            );
        }
        Ok(())
    }
}

impl ContentValidator for FredValidator {
    fn feed(&mut self, mut block: &[u8]) -> anyhow::Result<()> {
        while let Some(end) = block.iter().position(|&b| b == b'\n') {
            let (head, rest) = (&block[..end], &block[end + 1..]);
            if self.line.is_empty() {
                ensure!(head.len() < LINE_BYTES_MAX, self.too_long());
                self.check_line(head)?;
            } else {
                self.line.extend_from_slice(head);
                ensure!(self.line.len() < LINE_BYTES_MAX, self.too_long());
                let line = std::mem::take(&mut self.line);
                self.check_line(&line)?;
            }
            block = rest;
        }
        self.line.extend_from_slice(block);
        ensure!(self.line.len() < LINE_BYTES_MAX, self.too_long());
        Ok(())
    }

    fn finish(self: Box<Self>) -> anyhow::Result<u64> {
        if !self.line.is_empty() {
            bail!(
                "line {}: the file ends mid-line ({}): truncated",
                self.line_no + 1,
                shown(&self.line)
            );
        }
        ensure!(self.line_no > 0, "empty file: no header");
        ensure!(
            self.rows > 0,
            "no data rows after the header {:?}",
            self.header
        );
        Ok(self.rows)
    }
}

impl FredValidator {
    fn too_long(&self) -> String {
        format!(
            "line {}: longer than {LINE_BYTES_MAX} bytes",
            self.line_no + 1
        )
    }
}

/// `observation_date,<series>,...`.
pub fn expected_header(series: &[String]) -> String {
    std::iter::once(DATE_COLUMN)
        .chain(series.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(",")
}

/// `YYYY-MM-01` as (year, month).
fn parse_month(date: &str) -> Option<(u32, u32)> {
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || &b[8..] != b"01" {
        return None;
    }
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if !digits(&b[..4]) || !digits(&b[5..7]) {
        return None;
    }
    let year: u32 = date[..4].parse().ok()?;
    let month: u32 = date[5..7].parse().ok()?;
    ((1..=12).contains(&month) && year >= 1000).then_some((year, month))
}

/// A decimal number (`-12`, `75.8`, `0.125`), or missing: empty or `.`.
fn is_value(v: &str) -> bool {
    if v.is_empty() || v == "." {
        return true;
    }
    if v.len() > VALUE_BYTES_MAX {
        return false;
    }
    let unsigned = v.strip_prefix('-').unwrap_or(v);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(digits)
}

/// Bytes shown in an error: quoted, at most 80 characters.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let cut: String = text.chars().take(80).collect();
    if cut.len() < text.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Vec<String> {
        vec!["PCOFFOTMUSDM".into(), "PCOFFROBUSDM".into()]
    }

    fn check(data: &[u8], cut: usize) -> anyhow::Result<u64> {
        let mut v = Box::new(FredValidator::new(&series()));
        for piece in data.chunks(cut.max(1)) {
            v.feed(piece)?;
        }
        v.finish()
    }

    /// The verdict, the same whatever the cut; the error text when it fails.
    fn verdict(data: &str) -> Result<u64, String> {
        let whole = check(data.as_bytes(), data.len()).map_err(|e| format!("{e:#}"));
        for cut in [1, 2, 3, 7, 64] {
            let cut_up = check(data.as_bytes(), cut).map_err(|e| format!("{e:#}"));
            assert_eq!(whole, cut_up, "cut {cut}");
        }
        whole
    }

    const GOOD: &str = "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n\
        1990-01-01,75.8,46.2\n1990-02-01,.,\n1990-03-01,,47\n2024-12-01,-1.5,0.125\n";

    #[test]
    fn a_real_shaped_file_passes_with_bom_crlf_and_missing_values() {
        assert_eq!(verdict(GOOD), Ok(4));
        let crlf = format!("\u{feff}{}", GOOD.replace('\n', "\r\n"));
        assert_eq!(verdict(&crlf), Ok(4));
    }

    #[test]
    fn bad_files_are_refused_naming_the_line_and_the_rule() {
        let cases: &[(&str, &str)] = &[
            (
                "<!DOCTYPE html>\n<html>Error</html>\n",
                "line 1: expected the header",
            ),
            (
                "DATE,PCOFFOTMUSDM,PCOFFROBUSDM\n1990-01-01,1,2\n",
                "found \"DATE,",
            ),
            (
                "observation_date,PCOFFOTMUSDM\n1990-01-01,1\n",
                "line 1: expected the header",
            ),
            (
                "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n1990-01-01,abc,2\n",
                "line 2: PCOFFOTMUSDM value \"abc\" is not a number",
            ),
            (
                "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n1990-01-01,1,NaN\n",
                "PCOFFROBUSDM value \"NaN\"",
            ),
            (
                "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n1990-01-01,1e3,2\n",
                "value \"1e3\"",
            ),
            (
                "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n1990-01-15,1,2\n",
                "line 2: date \"1990-01-15\" is not YYYY-MM-01",
            ),
            (
                "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n1990-13-01,1,2\n",
                "is not YYYY-MM-01",
            ),
            (
                "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n1990-02-01,1,2\n1990-01-01,1,2\n",
                "line 3: date 1990-01-01 does not follow 1990-02-01",
            ),
            (
                "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n1990-02-01,1,2\n1990-02-01,1,2\n",
                "dates must increase",
            ),
            (
                "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n1990-01-01,1\n",
                "line 2: 2 fields, expected 3",
            ),
            (
                "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n1990-01-01,1,2\n1990-02-01,7",
                "line 3: the file ends mid-line (\"1990-02-01,7\"): truncated",
            ),
            (
                "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n",
                "no data rows",
            ),
            ("", "empty file"),
            (
                "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n1990-01-01,1,2\n\n",
                "line 3: 1 fields",
            ),
            (
                "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n1990-01-01,caf\u{e9},2\n",
                "line 2: not ASCII",
            ),
        ];
        for (data, expected) in cases {
            let error = verdict(data).expect_err(data);
            assert!(error.contains(expected), "{data:?}: {error}");
        }
    }

    #[test]
    fn sizes_are_bounded() {
        let long = format!(
            "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n1990-01-01,{}\n",
            "1".repeat(LINE_BYTES_MAX)
        );
        assert!(verdict(&long).unwrap_err().contains("line 2: longer than"));
        let value = format!(
            "observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n1990-01-01,{},2\n",
            "1".repeat(VALUE_BYTES_MAX + 1)
        );
        assert!(verdict(&value).unwrap_err().contains("is not a number"));
        let mut many = String::from("observation_date,PCOFFOTMUSDM,PCOFFROBUSDM\n");
        for i in 0..=ROWS_MAX {
            many.push_str(&format!("{:04}-{:02}-01,1,2\n", 1000 + i / 12, i % 12 + 1));
        }
        let error = check(many.as_bytes(), 1 << 16).unwrap_err();
        assert!(format!("{error}").contains(&format!("more than {ROWS_MAX} data rows")));
    }

    #[test]
    fn the_header_follows_the_configured_series() {
        let one = vec!["PCOFFOTMUSDM".to_string()];
        let mut v = Box::new(FredValidator::new(&one));
        v.feed(b"observation_date,PCOFFOTMUSDM\n2000-01-01,1\n")
            .unwrap();
        assert_eq!(v.finish().unwrap(), 1);
    }
}
