//! Streaming validation of a PSD CSV: UTF-8, the exact header, 12 fields in every row under
//! RFC 4180 quoting rules, the typed columns castable, at least one data row. Feed it chunks of
//! any size; memory stays constant (only the header's fields and one typed field are kept).
//!
//! Strict on purpose: a quote inside an unquoted field, text after a closing quote, a bare CR or
//! an unterminated quote is an error, where lenient parsers re-synchronise and let a broken row
//! pass as a valid one.
//!
//! The typed columns are checked against what the lakehouse does with them (transform's
//! staging model casts `Market_Year`, `Calendar_Year` and `Month` to INTEGER and `Value` to
//! DOUBLE; the cleaned models require the key columns not NULL, and an empty field is NULL):
//! a file that passes here never stops a transform on a cast or a NULL key. See
//! [`column_rule`] for each column's rule.

use crate::COLUMNS;

/// Longest record accepted, in bytes. Real rows are about 150 bytes; a longer one means a broken
/// quote swallowed the file, and the bound keeps the header buffer and error reports small.
pub const RECORD_BYTES_MAX: u64 = 64 * 1024;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Bytes that end the plain run of an unquoted field, and of a quoted one.
static UNQUOTED_STOP: [bool; 256] = stop_table(b",\n\r\"");
static QUOTED_STOP: [bool; 256] = stop_table(b"\"\n");

const fn stop_table(bytes: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        table[bytes[i] as usize] = true;
        i += 1;
    }
    table
}

/// Longest content kept of a typed field: more than any valid year, month or value has.
pub const TYPED_FIELD_BYTES_MAX: usize = 64;

/// What a column of a data row must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Anything (text columns).
    Text,
    /// Not empty: a key column the cleaned models require not NULL.
    Key,
    /// A 32-bit integer, `[+-]?[0-9]+` (years, month; leading zeros as in `00`): DuckDB's
    /// INTEGER cast takes it. Never empty: these columns are keys too.
    Integer,
    /// Empty (NULL), or a finite decimal number `[+-]?digits[.digits][e[+-]digits]`: DuckDB's
    /// DOUBLE cast takes it.
    Number,
}

/// The rule of column `index` (0-based, in [`COLUMNS`] order).
pub const fn column_rule(index: usize) -> Rule {
    match index {
        0 | 2 | 7 => Rule::Key, // Commodity_Code, Country_Code, Attribute_ID
        4..=6 => Rule::Integer, // Market_Year, Calendar_Year, Month
        11 => Rule::Number,     // Value
        _ => Rule::Text,
    }
}

/// Bit `i` set: column `i` has a rule other than [`Rule::Text`], so its content is kept.
const CHECKED_COLUMNS: u32 = {
    let mut mask = 0;
    let mut i = 0;
    while i < COLUMNS.len() {
        if !matches!(column_rule(i), Rule::Text) {
            mask |= 1 << i;
        }
        i += 1;
    }
    mask
};

fn is_integer(s: &[u8]) -> bool {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return false;
    }
    // Within i32: at most 2^31 - 1, or 2^31 when negative.
    let limit = 2_147_483_647 + i64::from(negative);
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return false;
        }
        value = value * 10 + i64::from(d - b'0');
        if value > limit {
            return false;
        }
    }
    true
}

fn is_number(s: &[u8]) -> bool {
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut i = usize::from(matches!(s.first(), Some(b'+' | b'-')));
    let whole = digits(&s[i..]);
    i += whole;
    let mut fraction = 0;
    let mut exponent = false;
    if s.get(i) == Some(&b'.') {
        i += 1;
        fraction = digits(&s[i..]);
        i += fraction;
    }
    if whole + fraction == 0 {
        return false;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        exponent = true;
        i += 1;
        i += usize::from(matches!(s.get(i), Some(b'+' | b'-')));
        let exponent = digits(&s[i..]);
        if exponent == 0 {
            return false;
        }
        i += exponent;
    }
    // Finite as a double (`1e999` is infinite); without an exponent, the at most
    // TYPED_FIELD_BYTES_MAX digits always are.
    i == s.len()
        && (!exponent
            || std::str::from_utf8(s)
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .is_some_and(f64::is_finite))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("CSV is not UTF-8: invalid byte sequence at byte offset {offset}")]
    NotUtf8 { offset: u64 },
    #[error("CSV ends in the middle of a UTF-8 sequence")]
    TruncatedUtf8,
    #[error("CSV header is not the PSD header: expected {expected:?}, found {found:?}")]
    Header { expected: String, found: String },
    #[error("CSV row {row} (line {line}) has {found} fields, expected 12")]
    FieldCount { row: u64, line: u64, found: u64 },
    #[error(
        "CSV row {row} (line {line}) is longer than {RECORD_BYTES_MAX} bytes (unbalanced quote?)"
    )]
    RecordTooLong { row: u64, line: u64 },
    #[error("CSV row {row} (line {line}) is malformed: {what}")]
    Malformed {
        row: u64,
        line: u64,
        what: &'static str,
    },
    #[error("CSV row {row} (line {line}), column {column}: {found:?} is not {expected}")]
    Value {
        row: u64,
        line: u64,
        column: &'static str,
        /// The field's content, cut at [`TYPED_FIELD_BYTES_MAX`] bytes.
        found: String,
        expected: &'static str,
    },
    #[error("CSV has a header but no data rows")]
    NoRows,
    #[error("CSV is empty")]
    Empty,
}

/// What a valid CSV contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvSummary {
    /// Data rows, header excluded.
    pub rows: u64,
    /// Bytes fed, BOM included.
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a record (nothing of it seen yet).
    RecordStart,
    /// At the start of a field after a comma.
    FieldStart,
    Unquoted,
    Quoted,
    /// Saw `"` inside a quoted field: either an escaped quote or the field's end.
    QuoteInQuoted,
    /// Saw CR outside quotes: LF must follow.
    Cr,
    /// Saw CR at the start of a record: a blank CRLF line if LF follows.
    BlankCr,
}

pub struct CsvValidator {
    state: State,
    /// Records completed, header included.
    records: u64,
    /// Fields completed in the current record.
    fields: u64,
    record_bytes: u64,
    /// Line number (1-based) of the current position; quoted newlines count.
    line: u64,
    /// Line the current record started on.
    record_line: u64,
    bytes: u64,
    header: Vec<Vec<u8>>,
    field: Vec<u8>,
    /// Content of the current field of a data row when its column is checked, at most
    /// [`TYPED_FIELD_BYTES_MAX`] bytes; `typed_len` counts them all (more means cut).
    typed: [u8; TYPED_FIELD_BYTES_MAX],
    typed_len: usize,
    /// The current field was checked in place by the fast path.
    typed_checked: bool,
    /// The first field of the current record that broke its column's rule.
    bad_value: Option<ValidationError>,
    utf8_carry: Vec<u8>,
    /// The first bytes, held until it is known whether they are a BOM.
    head: Vec<u8>,
    head_done: bool,
}

impl Default for CsvValidator {
    fn default() -> Self {
        Self::new()
    }
}

impl CsvValidator {
    pub fn new() -> Self {
        CsvValidator {
            state: State::RecordStart,
            records: 0,
            fields: 0,
            record_bytes: 0,
            line: 1,
            record_line: 1,
            bytes: 0,
            header: Vec::with_capacity(COLUMNS.len()),
            field: Vec::new(),
            typed: [0; TYPED_FIELD_BYTES_MAX],
            typed_len: 0,
            typed_checked: false,
            bad_value: None,
            utf8_carry: Vec::with_capacity(4),
            head: Vec::with_capacity(UTF8_BOM.len()),
            head_done: false,
        }
    }

    /// Data rows completed so far.
    pub fn rows(&self) -> u64 {
        self.records.saturating_sub(1)
    }

    /// Feeds the next bytes. Only bytes known to be valid UTF-8 are parsed, in order, so the
    /// error reported is the first by position in the file however it is cut into chunks.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ValidationError> {
        let mut at = self.bytes; // offset of `data[0]` in the file
        self.bytes += chunk.len() as u64;
        let mut data = chunk;
        if !self.utf8_carry.is_empty() {
            // Complete the sequence split across chunks, at most 3 bytes more.
            let need = utf8_len(self.utf8_carry[0]) - self.utf8_carry.len();
            let take = need.min(data.len());
            self.utf8_carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            at += take as u64;
            let carried = self.utf8_carry.len();
            match std::str::from_utf8(&self.utf8_carry) {
                Ok(_) => {}
                // Still a valid beginning: this chunk ended too (`data` is empty).
                Err(e) if e.error_len().is_none() => return Ok(()),
                // Checked as each byte arrives, not once the sequence is long enough: `F0 69`
                // is invalid at once, whatever follows.
                Err(_) => {
                    return Err(ValidationError::NotUtf8 {
                        offset: at - carried as u64,
                    });
                }
            }
            let mut sequence = [0u8; 4];
            sequence[..carried].copy_from_slice(&self.utf8_carry);
            self.utf8_carry.clear();
            self.parse_text(&sequence[..carried])?;
        }
        match std::str::from_utf8(data) {
            Ok(_) => self.parse_text(data),
            Err(e) => {
                let (valid, rest) = data.split_at(e.valid_up_to());
                self.parse_text(valid)?;
                if e.error_len().is_some() {
                    return Err(ValidationError::NotUtf8 {
                        offset: at + valid.len() as u64,
                    });
                }
                // A sequence cut by the chunk's end: parsed once the next chunk completes it.
                self.utf8_carry.extend_from_slice(rest);
                Ok(())
            }
        }
    }

    /// Parses bytes that are valid UTF-8, holding back the first three until it is known
    /// whether they are a BOM: it belongs to the bytes (and the hash) but not to the first
    /// column's name, and may arrive split over several chunks.
    fn parse_text(&mut self, text: &[u8]) -> Result<(), ValidationError> {
        if self.head_done {
            return self.parse(text);
        }
        let take = (UTF8_BOM.len() - self.head.len()).min(text.len());
        self.head.extend_from_slice(&text[..take]);
        if self.head.len() < UTF8_BOM.len() {
            return Ok(());
        }
        self.release_head()?;
        self.parse(&text[take..])
    }

    fn release_head(&mut self) -> Result<(), ValidationError> {
        self.head_done = true;
        let head = std::mem::take(&mut self.head);
        if head == UTF8_BOM {
            Ok(())
        } else {
            self.parse(&head)
        }
    }

    pub fn finish(mut self) -> Result<CsvSummary, ValidationError> {
        if !self.utf8_carry.is_empty() {
            return Err(ValidationError::TruncatedUtf8);
        }
        if !self.head_done {
            self.release_head()?;
        }
        match self.state {
            State::RecordStart => {}
            State::Quoted => return Err(self.malformed("unterminated quoted field at end of file")),
            State::Cr | State::BlankCr => return Err(self.malformed("bare CR at end of file")),
            State::FieldStart | State::Unquoted | State::QuoteInQuoted => {
                self.end_field();
                self.end_record()?;
            }
        }
        match self.records {
            0 => Err(ValidationError::Empty),
            1 => Err(ValidationError::NoRows),
            n => Ok(CsvSummary {
                rows: n - 1,
                bytes: self.bytes,
            }),
        }
    }

    fn malformed(&self, what: &'static str) -> ValidationError {
        ValidationError::Malformed {
            row: self.records,
            line: self.line,
            what,
        }
    }

    fn parse(&mut self, input: &[u8]) -> Result<(), ValidationError> {
        let mut i = 0;
        while i < input.len() {
            // Fast path: skip over the plain bytes of a data row's field in one go, from its
            // first byte on (the header keeps every byte, so it takes the slow path).
            let stop = match self.state {
                State::Quoted => Some(&QUOTED_STOP),
                State::RecordStart | State::FieldStart | State::Unquoted => Some(&UNQUOTED_STOP),
                _ => None,
            };
            if let Some(stop) = stop.filter(|_| self.records > 0) {
                let rest = &input[i..];
                let n = rest
                    .iter()
                    .position(|&b| stop[usize::from(b)])
                    .unwrap_or(rest.len());
                if n > 0 {
                    self.grow(n as u64)?;
                    if self.checked_field() {
                        let whole =
                            self.state != State::Quoted && self.typed_len == 0 && n < rest.len();
                        if whole {
                            // The whole unquoted field is here, up to its delimiter (or a
                            // stray quote, an error anyway): checked in place, not copied.
                            self.check_value(&rest[..n], n);
                            self.typed_checked = true;
                        } else {
                            self.keep_typed(&rest[..n]);
                        }
                    }
                    if self.state != State::Quoted {
                        self.state = State::Unquoted;
                    }
                    i += n;
                    if i == input.len() {
                        break;
                    }
                }
            }
            let b = input[i];
            i += 1;
            self.grow(1)?;
            self.state = match (self.state, b) {
                (State::RecordStart, b'\r') => State::BlankCr,
                (State::RecordStart | State::BlankCr, b'\n') => {
                    // A blank line is not a row.
                    self.line += 1;
                    self.record_bytes = 0;
                    self.record_line = self.line;
                    State::RecordStart
                }
                (State::RecordStart | State::FieldStart, b'"') => State::Quoted,
                (
                    State::RecordStart | State::FieldStart | State::Unquoted | State::QuoteInQuoted,
                    b',',
                ) => {
                    self.end_field();
                    State::FieldStart
                }
                (State::FieldStart | State::Unquoted | State::QuoteInQuoted, b'\n') => {
                    self.end_field();
                    self.end_record()?;
                    self.line += 1;
                    self.record_line = self.line;
                    State::RecordStart
                }
                (State::FieldStart | State::Unquoted | State::QuoteInQuoted, b'\r') => State::Cr,
                (State::Cr, b'\n') => {
                    self.end_field();
                    self.end_record()?;
                    self.line += 1;
                    self.record_line = self.line;
                    State::RecordStart
                }
                (State::Cr | State::BlankCr, _) => {
                    return Err(self.malformed("bare CR not followed by LF"));
                }
                (State::Unquoted, b'"') => {
                    return Err(self.malformed("quote inside an unquoted field"));
                }
                (State::RecordStart | State::FieldStart | State::Unquoted, _) => {
                    self.content_byte(b);
                    State::Unquoted
                }
                (State::Quoted, b'"') => State::QuoteInQuoted,
                (State::Quoted, _) => {
                    if b == b'\n' {
                        self.line += 1;
                    }
                    self.content_byte(b);
                    State::Quoted
                }
                (State::QuoteInQuoted, b'"') => {
                    self.content_byte(b'"');
                    State::Quoted
                }
                (State::QuoteInQuoted, _) => {
                    return Err(self.malformed("text after a closing quote"));
                }
            };
        }
        Ok(())
    }

    /// Keeps a byte of the current field: every byte of the header's, and those of a data
    /// row's checked columns.
    fn content_byte(&mut self, b: u8) {
        if self.records == 0 {
            self.field.push(b);
        } else if self.checked_field() {
            self.keep_typed(&[b]);
        }
    }

    /// The current field of a data row is in a checked column.
    fn checked_field(&self) -> bool {
        self.fields < COLUMNS.len() as u64 && CHECKED_COLUMNS & (1 << self.fields) != 0
    }

    fn keep_typed(&mut self, data: &[u8]) {
        let start = self.typed_len.min(TYPED_FIELD_BYTES_MAX);
        let end = (self.typed_len + data.len()).min(TYPED_FIELD_BYTES_MAX);
        self.typed[start..end].copy_from_slice(&data[..end - start]);
        self.typed_len += data.len();
    }

    /// Checks the field that just ended against its column's rule, unless the fast path did.
    fn check_typed(&mut self) {
        if std::mem::take(&mut self.typed_checked) {
            return;
        }
        let len = std::mem::take(&mut self.typed_len);
        let typed = self.typed;
        self.check_value(&typed[..len.min(TYPED_FIELD_BYTES_MAX)], len);
    }

    /// Checks a field's content (`kept`, the first bytes of its `len`) against its column's
    /// rule. The first failure of a record is reported when the record ends, unless its field
    /// count is wrong: a row that shifted its columns is reported as such.
    fn check_value(&mut self, kept: &[u8], len: usize) {
        let cut = len > TYPED_FIELD_BYTES_MAX;
        let ok = match column_rule(self.fields as usize) {
            Rule::Text => true,
            Rule::Key => len > 0,
            Rule::Integer => !cut && is_integer(kept),
            Rule::Number => len == 0 || (!cut && is_number(kept)),
        };
        if !ok && self.bad_value.is_none() {
            self.bad_value = Some(self.value_error(kept, len));
        }
    }

    #[cold]
    fn value_error(&self, kept: &[u8], len: usize) -> ValidationError {
        let index = self.fields as usize;
        let kept = &kept[..kept.len().min(TYPED_FIELD_BYTES_MAX)];
        let mut found = String::from_utf8_lossy(kept).into_owned();
        if len > TYPED_FIELD_BYTES_MAX {
            found.push('…');
        }
        ValidationError::Value {
            row: self.records,
            line: self.record_line,
            column: COLUMNS[index],
            found,
            expected: match column_rule(index) {
                Rule::Key => "a code (never empty)",
                Rule::Integer => "an integer",
                Rule::Number | Rule::Text => "a number or empty",
            },
        }
    }

    fn grow(&mut self, n: u64) -> Result<(), ValidationError> {
        self.record_bytes += n;
        if self.record_bytes > RECORD_BYTES_MAX {
            return Err(ValidationError::RecordTooLong {
                row: self.records,
                line: self.record_line,
            });
        }
        Ok(())
    }

    fn end_field(&mut self) {
        if self.records == 0 {
            if self.header.len() <= COLUMNS.len() {
                self.header.push(std::mem::take(&mut self.field));
            }
        } else if self.checked_field() {
            self.check_typed();
        }
        self.fields += 1;
    }

    fn end_record(&mut self) -> Result<(), ValidationError> {
        if self.records == 0 {
            self.check_header()?;
        } else if self.fields != COLUMNS.len() as u64 {
            return Err(ValidationError::FieldCount {
                row: self.records,
                line: self.record_line,
                found: self.fields,
            });
        } else if let Some(e) = self.bad_value.take() {
            return Err(e);
        }
        self.records += 1;
        self.fields = 0;
        self.record_bytes = 0;
        Ok(())
    }

    fn check_header(&self) -> Result<(), ValidationError> {
        let found: Vec<String> = self
            .header
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        if self.fields != COLUMNS.len() as u64 || found != COLUMNS {
            let mut found = found.join(",");
            if found.len() > 300 {
                let cut = (0..=300)
                    .rev()
                    .find(|&i| found.is_char_boundary(i))
                    .unwrap_or(0);
                found.truncate(cut);
                found.push('…');
            }
            return Err(ValidationError::Header {
                expected: COLUMNS.join(","),
                found,
            });
        }
        Ok(())
    }
}

/// Length of a UTF-8 sequence from its first byte (1 for invalid leaders: caught by from_utf8).
fn utf8_len(first: u8) -> usize {
    match first {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Commodity_Code,Commodity_Description,Country_Code,Country_Name,Market_Year,Calendar_Year,Month,Attribute_ID,Attribute_Description,Unit_ID,Unit_Description,Value";
    const ROW: &str = "\"0711100\",\"Coffee, Green\",\"NA\",\"Netherlands Antilles\",1960,1960,\"00\",\"130\",\"Rst,Ground Dom. Consum\",\"002\",\"(1000 60 KG BAGS)\",";

    fn validate_chunks(data: &[u8], chunk: usize) -> Result<CsvSummary, ValidationError> {
        let mut v = CsvValidator::new();
        for c in data.chunks(chunk.max(1)) {
            v.feed(c)?;
        }
        v.finish()
    }

    fn validate(data: &str) -> Result<CsvSummary, ValidationError> {
        validate_chunks(data.as_bytes(), data.len())
    }

    #[test]
    fn accepts_bom_crlf_quoted_commas_and_empty_values_at_any_chunking() {
        let data = format!("\u{feff}{HEADER}\r\n{ROW}\r\n{ROW}\r\n");
        for chunk in [1, 2, 3, 7, 64, data.len()] {
            let s = validate_chunks(data.as_bytes(), chunk).unwrap();
            assert_eq!(
                s,
                CsvSummary {
                    rows: 2,
                    bytes: data.len() as u64
                },
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn accepts_missing_final_line_end() {
        assert_eq!(validate(&format!("{HEADER}\n{ROW}")).unwrap().rows, 1);
    }

    #[test]
    fn rejects_foreign_header() {
        let err = validate("a,b,c\n1,2,3\n").unwrap_err();
        assert!(
            matches!(err, ValidationError::Header { ref found, .. } if found == "a,b,c"),
            "{err}"
        );
    }

    #[test]
    fn rejects_header_without_rows_and_empty_input() {
        assert_eq!(
            validate(&format!("{HEADER}\r\n")).unwrap_err(),
            ValidationError::NoRows
        );
        assert_eq!(validate("").unwrap_err(), ValidationError::Empty);
    }

    #[test]
    fn rejects_wrong_field_count_naming_row_and_line() {
        let data = format!("{HEADER}\n{ROW}\n{ROW},extra\n");
        assert_eq!(
            validate(&data).unwrap_err(),
            ValidationError::FieldCount {
                row: 2,
                line: 3,
                found: 13
            }
        );
        let data = format!("{HEADER}\n0711100,Coffee\n");
        assert_eq!(
            validate(&data).unwrap_err(),
            ValidationError::FieldCount {
                row: 1,
                line: 2,
                found: 2
            }
        );
    }

    #[test]
    fn rejects_unbalanced_quote_swallowing_the_file() {
        let mut data = format!("{HEADER}\n\"0711100,Coffee\n");
        for _ in 0..1000 {
            data.push_str(ROW);
            data.push('\n');
        }
        let err = validate(&data).unwrap_err();
        assert_eq!(
            err,
            ValidationError::Malformed {
                row: 1,
                line: 3,
                what: "text after a closing quote"
            }
        );
        let swallowed = format!("{HEADER}\n\"{}\n", "x,".repeat(40_000));
        let err = validate(&swallowed).unwrap_err();
        assert!(
            matches!(err, ValidationError::RecordTooLong { row: 1, line: 2 }),
            "{err}"
        );
    }

    #[test]
    fn rejects_very_wide_rows_without_buffering_them() {
        let data = format!("{HEADER}\n{}\n", ",".repeat(200));
        assert_eq!(
            validate(&data).unwrap_err(),
            ValidationError::FieldCount {
                row: 1,
                line: 2,
                found: 201
            }
        );
    }

    #[test]
    fn rejects_stray_quotes_bare_cr_and_unterminated_quotes() {
        let quote_in_field = format!("{HEADER}\n07\"11,{}\n", "1,".repeat(10) + "1");
        assert!(matches!(
            validate(&quote_in_field).unwrap_err(),
            ValidationError::Malformed {
                what: "quote inside an unquoted field",
                ..
            }
        ));
        let bare_cr = format!("{HEADER}\n{ROW}\rX\n");
        assert!(matches!(
            validate(&bare_cr).unwrap_err(),
            ValidationError::Malformed {
                what: "bare CR not followed by LF",
                ..
            }
        ));
        let open = format!("{HEADER}\n{ROW}\n\"abc");
        assert!(matches!(
            validate(&open).unwrap_err(),
            ValidationError::Malformed {
                what: "unterminated quoted field at end of file",
                ..
            }
        ));
    }

    #[test]
    fn quoted_header_escaped_quotes_and_newlines_in_quotes_are_valid() {
        let quoted_header: Vec<String> = HEADER.split(',').map(|c| format!("\"{c}\"")).collect();
        let data = format!(
            "{}\r\n1,\"say \"\"hi\"\"\",\"two\nlines\",4,5,6,7,8,9,10,11,\r\n\r\n",
            quoted_header.join(",")
        );
        assert_eq!(validate(&data).unwrap().rows, 1);
    }

    #[test]
    fn utf8_split_across_chunks_is_fine_and_invalid_bytes_are_located() {
        let data = format!("{HEADER}\n0711100,Caf\u{e9},BR,Br\u{e9}sil,1,1,1,1,a,1,u,1\n");
        for chunk in 1..8 {
            assert_eq!(validate_chunks(data.as_bytes(), chunk).unwrap().rows, 1);
        }
        let mut bad = format!("{HEADER}\n").into_bytes();
        let offset = bad.len() as u64;
        bad.extend_from_slice(b"\xff,1,1,1,1,1,1,1,1,1,1,1\n");
        for chunk in [1, 5, bad.len()] {
            assert_eq!(
                validate_chunks(&bad, chunk).unwrap_err(),
                ValidationError::NotUtf8 { offset },
                "chunk {chunk}"
            );
        }
        let mut cut = format!("{HEADER}\n1,1,1,1,1,1,1,1,1,1,1,").into_bytes();
        cut.push(0xC3);
        assert_eq!(
            validate_chunks(&cut, 3).unwrap_err(),
            ValidationError::TruncatedUtf8
        );
    }

    /// A data row with the typed columns set as given (`Market_Year`, `Calendar_Year`,
    /// `Month`, `Value`, each as raw CSV field text).
    fn typed_row(market_year: &str, calendar_year: &str, month: &str, value: &str) -> String {
        format!(
            "0711100,Coffee,BR,Brazil,{market_year},{calendar_year},{month},028,Production,002,(1000 60 KG BAGS),{value}"
        )
    }

    #[test]
    fn typed_columns_accept_what_upstream_writes_and_duckdb_casts() {
        for (my, cy, m, v) in [
            ("1960", "1961", "00", ""),      // Month 00 of old years, empty Value
            ("2025", "2026", "\"01\"", "0"), // a quoted month
            ("02025", "+2026", "12", "-12.50"),
            ("2025", "2026", "1", "1234567"),
            ("2025", "2026", "1", ".5"),
            ("2025", "2026", "1", "5."),
            ("2025", "2026", "1", "1e3"),
            ("2025", "2026", "1", "-1.25E-2"),
            ("2025", "2026", "1", "\"\""),
            ("-2147483648", "2147483647", "0", "+7"),
        ] {
            let data = format!("{HEADER}\n{}\n", typed_row(my, cy, m, v));
            for chunk in [1, 3, data.len()] {
                assert_eq!(
                    validate_chunks(data.as_bytes(), chunk).map(|s| s.rows),
                    Ok(1),
                    "{my} {cy} {m} {v}, chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn a_value_staging_cannot_cast_is_refused_naming_row_line_and_column() {
        let good = typed_row("2025", "2026", "01", "1");
        for (row, column, found, expected) in [
            (
                typed_row("2025", "2026", "01", "n/a"),
                "Value",
                "n/a",
                "a number or empty",
            ),
            (
                typed_row("20x4", "2026", "01", "1"),
                "Market_Year",
                "20x4",
                "an integer",
            ),
            (
                typed_row("2025", "", "01", "1"),
                "Calendar_Year",
                "",
                "an integer",
            ),
            (
                typed_row("2025", "2026", "\"\"", "1"),
                "Month",
                "",
                "an integer",
            ),
            (
                typed_row("2025", "2026", "1.5", "1"),
                "Month",
                "1.5",
                "an integer",
            ),
            (
                typed_row("2025", "99999999999", "01", "1"),
                "Calendar_Year",
                "99999999999",
                "an integer",
            ),
            (
                typed_row("2025", "2026", "01", "1e999"),
                "Value",
                "1e999",
                "a number or empty",
            ),
            (
                typed_row("2025", "2026", "01", "inf"),
                "Value",
                "inf",
                "a number or empty",
            ),
            (
                typed_row("2025", "2026", "01", "NaN"),
                "Value",
                "NaN",
                "a number or empty",
            ),
            (
                typed_row("2025", "2026", "01", " 1"),
                "Value",
                " 1",
                "a number or empty",
            ),
            (typed_row("2025", "2026", "01", "1,5"), "", "", ""), // 13 fields: see below
            (
                typed_row("2025", "2026", "01", "-"),
                "Value",
                "-",
                "a number or empty",
            ),
            (
                typed_row("2025", "2026", "01", "1e"),
                "Value",
                "1e",
                "a number or empty",
            ),
            (
                typed_row("2025", "2026", "01", "\"1\"\"\""),
                "Value",
                "1\"",
                "a number or empty",
            ),
            (
                "0711100,Coffee,,Brazil,2025,2026,01,028,Production,002,(1000 60 KG BAGS),1".into(),
                "Country_Code",
                "",
                "a code (never empty)",
            ),
            (
                ",Coffee,BR,Brazil,2025,2026,01,028,Production,002,(1000 60 KG BAGS),1".into(),
                "Commodity_Code",
                "",
                "a code (never empty)",
            ),
            (
                "0711100,Coffee,BR,Brazil,2025,2026,01,\"\",Production,002,(1000 60 KG BAGS),1"
                    .into(),
                "Attribute_ID",
                "",
                "a code (never empty)",
            ),
        ] {
            let data = format!("{HEADER}\r\n{good}\r\n{row}\r\n{good}\r\n");
            let want = if column.is_empty() {
                ValidationError::FieldCount {
                    row: 2,
                    line: 3,
                    found: 13,
                }
            } else {
                ValidationError::Value {
                    row: 2,
                    line: 3,
                    column,
                    found: found.into(),
                    expected,
                }
            };
            for chunk in [1, 2, 5, data.len()] {
                assert_eq!(
                    validate_chunks(data.as_bytes(), chunk).unwrap_err(),
                    want,
                    "{row:?}, chunk {chunk}"
                );
            }
        }
        let err = validate(&format!(
            "{HEADER}\n{}\n",
            typed_row("2025", "2026", "01", "n/a")
        ));
        assert_eq!(
            err.unwrap_err().to_string(),
            "CSV row 1 (line 2), column Value: \"n/a\" is not a number or empty"
        );
    }

    #[test]
    fn a_shifted_row_is_reported_by_its_field_count_not_its_first_odd_value() {
        // An unquoted comma in a name shifts every later column: "Brazil" lands in Market_Year.
        let data = format!(
            "{HEADER}\n0711100,Coffee, Green,BR,Brazil,2025,2026,01,028,Production,002,(1000 60 KG BAGS),1\n"
        );
        assert_eq!(
            validate(&data).unwrap_err(),
            ValidationError::FieldCount {
                row: 1,
                line: 2,
                found: 13
            }
        );
    }

    #[test]
    fn a_typed_field_is_kept_only_up_to_its_bound() {
        let long = "9".repeat(10_000);
        let data = format!("{HEADER}\n{}\n", typed_row("2025", &long, "01", "1"));
        let err = validate(&data).unwrap_err();
        let ValidationError::Value { column, found, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(*column, "Calendar_Year");
        assert_eq!(found.len(), TYPED_FIELD_BYTES_MAX + '…'.len_utf8());
        // A number of digits past the bound is refused rather than half-read.
        let data = format!("{HEADER}\n{}\n", typed_row("2025", "2026", "01", &long));
        assert!(matches!(
            validate(&data).unwrap_err(),
            ValidationError::Value {
                column: "Value",
                ..
            }
        ));
    }

    // Regression (fuzzing, csv_validator): the whole file fed at once reported its first
    // invalid UTF-8 byte, fed in small chunks a broken row before it; the error must be the
    // first by position, however the download was cut.
    #[test]
    fn the_first_error_by_position_is_reported_at_any_chunking() {
        let good = typed_row("2025", "2026", "01", "1");
        let mut row_first = format!("{HEADER}\n{good}\n1,2\n{good}\n").into_bytes();
        row_first.extend_from_slice(b"caf\xff\n");
        let mut cr_then_bad = format!("{HEADER}\n{good}\r").into_bytes();
        cr_then_bad.extend_from_slice(b"\xc3\x28\n");
        let mut bad_then_row = format!("{HEADER}\nX{good}\n1,2\n").into_bytes();
        bad_then_row[HEADER.len() + 1] = 0xff;
        let crash =
            include_bytes!("../../../fuzz/regressions/csv_validator/chunking-changed-the-error");
        for data in [&row_first[..], &cr_then_bad, &bad_then_row, &crash[1..]] {
            let whole = validate_chunks(data, data.len());
            assert!(whole.is_err());
            for chunk in 1..=16 {
                assert_eq!(validate_chunks(data, chunk), whole, "chunk {chunk}");
            }
        }
        assert_eq!(
            validate_chunks(&row_first, row_first.len()).unwrap_err(),
            ValidationError::FieldCount {
                row: 2,
                line: 3,
                found: 2
            }
        );
        assert_eq!(
            validate_chunks(&cr_then_bad, 1).unwrap_err(),
            ValidationError::NotUtf8 {
                offset: (HEADER.len() + 1 + good.len() + 1) as u64
            }
        );
    }
}
