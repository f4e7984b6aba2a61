//! The JSON API's bodies, and the same rows as CSV (`?format=csv`): written by hand, in the
//! field order of the OpenAPI document, numbers in their shortest exact form (`ryu`, as
//! serde_json writes them), NULL as `null` in JSON and an empty field in CSV.

use std::fmt::Write as _;

use crate::data::{Commodity, Country, Data, MEASURES, Measures, Revision, WorldRow, value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }
}

/// Appends `s` as a JSON string.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a number in its shortest form that reads back as the same `f64`; NULL as `null`
/// (`empty` in CSV).
fn number(out: &mut String, v: f64, null: &str) {
    match value(v) {
        Some(v) => out.push_str(ryu::Buffer::new().format_finite(v)),
        None => out.push_str(null),
    }
}

/// The text of a value for a page's `data-value` attribute: the JSON form, empty for NULL.
pub fn plain_number(v: f64) -> String {
    let mut s = String::new();
    number(&mut s, v, "");
    s
}

fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn key(out: &mut String, name: &str) {
    json_str(out, name);
    out.push(':');
}

fn json_measures(out: &mut String, m: &Measures) {
    for (k, name) in MEASURES.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        key(out, name);
        number(out, m[k], "null");
    }
}

fn csv_measures(out: &mut String, m: &Measures) {
    for v in m {
        out.push(',');
        number(out, *v, "");
    }
}

fn csv_header(out: &mut String, leading: &[&str], trailing: &[&str]) {
    let names: Vec<&str> = leading
        .iter()
        .chain(MEASURES.iter())
        .chain(trailing.iter())
        .copied()
        .collect();
    out.push_str(&names.join(","));
    out.push_str("\r\n");
}

pub fn commodities(data: &Data, format: Format) -> String {
    let mut out = String::with_capacity(64 * data.commodities.len() + 32);
    match format {
        Format::Json => {
            out.push_str("{\"commodities\":[");
            for (i, c) in data.commodities.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('{');
                key(&mut out, "commodity_code");
                json_str(&mut out, &c.code);
                out.push(',');
                key(&mut out, "commodity");
                json_str(&mut out, &c.name);
                out.push(',');
                key(&mut out, "unit");
                json_str(&mut out, &c.unit);
                let _ = write!(
                    out,
                    ",\"first_year\":{},\"last_year\":{}}}",
                    c.first_year, c.last_year
                );
            }
            out.push_str("]}");
        }
        Format::Csv => {
            out.push_str("commodity_code,commodity,unit,first_year,last_year\r\n");
            for c in &data.commodities {
                csv_field(&mut out, &c.code);
                out.push(',');
                csv_field(&mut out, &c.name);
                out.push(',');
                csv_field(&mut out, &c.unit);
                let _ = write!(out, ",{},{}\r\n", c.first_year, c.last_year);
            }
        }
    }
    out
}

fn world_row_json(out: &mut String, r: &WorldRow) {
    let _ = write!(out, "{{\"market_year\":{},", r.market_year);
    json_measures(out, &r.m);
    out.push_str(",\"country_count\":");
    match r.country_count {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.push_str("null"),
    }
    out.push('}');
}

pub fn global_balance(c: &Commodity, format: Format) -> String {
    let mut out = String::with_capacity(300 * c.world.len() + 128);
    match format {
        Format::Json => {
            out.push('{');
            key(&mut out, "commodity_code");
            json_str(&mut out, &c.code);
            out.push(',');
            key(&mut out, "commodity");
            json_str(&mut out, &c.name);
            out.push(',');
            key(&mut out, "unit");
            json_str(&mut out, &c.unit);
            out.push_str(",\"rows\":[");
            for (i, r) in c.world.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                world_row_json(&mut out, r);
            }
            out.push_str("]}");
        }
        Format::Csv => {
            csv_header(
                &mut out,
                &["commodity_code", "commodity", "unit", "market_year"],
                &["country_count"],
            );
            for r in &c.world {
                csv_field(&mut out, &c.code);
                out.push(',');
                csv_field(&mut out, &c.name);
                out.push(',');
                csv_field(&mut out, &c.unit);
                let _ = write!(out, ",{}", r.market_year);
                csv_measures(&mut out, &r.m);
                match r.country_count {
                    Some(n) => {
                        let _ = write!(out, ",{n}\r\n");
                    }
                    None => out.push_str(",\r\n"),
                }
            }
        }
    }
    out
}

fn balance_head_json(out: &mut String, c: &Commodity) {
    out.push('{');
    key(out, "commodity_code");
    json_str(out, &c.code);
    out.push(',');
    key(out, "commodity");
    json_str(out, &c.name);
    out.push(',');
}

/// One country's history, ascending market year; only `market_year` when given.
pub fn country_balance(
    c: &Commodity,
    k: &Country,
    market_year: Option<i32>,
    format: Format,
) -> String {
    let rows: Vec<_> = k
        .rows
        .iter()
        .filter(|r| market_year.is_none_or(|y| r.market_year == y))
        .collect();
    let unit = if k.unit.is_empty() { &c.unit } else { &k.unit };
    let mut out = String::with_capacity(300 * rows.len() + 160);
    match format {
        Format::Json => {
            balance_head_json(&mut out, c);
            key(&mut out, "country_code");
            json_str(&mut out, &k.code);
            out.push(',');
            key(&mut out, "country");
            json_str(&mut out, &k.name);
            out.push(',');
            key(&mut out, "unit");
            json_str(&mut out, unit);
            out.push_str(",\"rows\":[");
            for (i, r) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{{\"market_year\":{},", r.market_year);
                json_measures(&mut out, &r.m);
                out.push('}');
            }
            out.push_str("]}");
        }
        Format::Csv => {
            csv_header(
                &mut out,
                &[
                    "commodity_code",
                    "commodity",
                    "country_code",
                    "country",
                    "unit",
                    "market_year",
                ],
                &[],
            );
            for r in rows {
                for field in [&c.code, &c.name, &k.code, &k.name, unit] {
                    csv_field(&mut out, field);
                    out.push(',');
                }
                let _ = write!(out, "{}", r.market_year);
                csv_measures(&mut out, &r.m);
                out.push_str("\r\n");
            }
        }
    }
    out
}

/// Every country's row of one market year, by production descending.
pub fn year_balance(c: &Commodity, market_year: i32, format: Format) -> String {
    let rows = c.year(market_year);
    let mut out = String::with_capacity(340 * rows.len() + 128);
    match format {
        Format::Json => {
            balance_head_json(&mut out, c);
            key(&mut out, "unit");
            json_str(&mut out, &c.unit);
            out.push_str(",\"rows\":[");
            for (i, (k, r)) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('{');
                key(&mut out, "country_code");
                json_str(&mut out, &k.code);
                out.push(',');
                key(&mut out, "country");
                json_str(&mut out, &k.name);
                let _ = write!(out, ",\"market_year\":{},", r.market_year);
                json_measures(&mut out, &r.m);
                out.push('}');
            }
            out.push_str("]}");
        }
        Format::Csv => {
            csv_header(
                &mut out,
                &[
                    "commodity_code",
                    "commodity",
                    "country_code",
                    "country",
                    "unit",
                    "market_year",
                ],
                &[],
            );
            for (k, r) in rows {
                let unit = if k.unit.is_empty() { &c.unit } else { &k.unit };
                for field in [&c.code, &c.name, &k.code, &k.name, unit] {
                    csv_field(&mut out, field);
                    out.push(',');
                }
                let _ = write!(out, "{}", r.market_year);
                csv_measures(&mut out, &r.m);
                out.push_str("\r\n");
            }
        }
    }
    out
}

const REVISION_FIELDS: [&str; 9] = [
    "country_code",
    "country",
    "market_year",
    "attribute_id",
    "attribute",
    "revised_in",
    "previous_value",
    "value",
    "change",
];

/// Revisions (indices into `data.revisions`, newest first), at most `limit`.
pub fn revisions<'a>(
    data: &Data,
    picked: impl Iterator<Item = &'a Revision>,
    limit: usize,
    format: Format,
) -> String {
    let mut out = String::new();
    match format {
        Format::Json => out.push_str("{\"rows\":["),
        Format::Csv => {
            out.push_str("commodity_code,");
            out.push_str(&REVISION_FIELDS.join(","));
            out.push_str("\r\n");
        }
    }
    for (i, r) in picked.take(limit).enumerate() {
        let place = &data.places[r.place as usize];
        let attribute = &data.attributes[r.attribute as usize];
        let month = &data.months[r.month as usize];
        let commodity = &data.commodities[r.commodity as usize];
        match format {
            Format::Json => {
                if i > 0 {
                    out.push(',');
                }
                out.push('{');
                key(&mut out, "country_code");
                json_str(&mut out, &place.code);
                out.push(',');
                key(&mut out, "country");
                json_str(&mut out, &place.name);
                let _ = write!(out, ",\"market_year\":{},", r.market_year);
                key(&mut out, "attribute_id");
                json_str(&mut out, &attribute.id);
                out.push(',');
                key(&mut out, "attribute");
                json_str(&mut out, &attribute.name);
                out.push(',');
                key(&mut out, "revised_in");
                json_str(&mut out, month);
                for (name, v) in [
                    ("previous_value", r.previous_value),
                    ("value", r.value),
                    ("change", r.change),
                ] {
                    out.push(',');
                    key(&mut out, name);
                    number(&mut out, v, "null");
                }
                out.push('}');
            }
            Format::Csv => {
                for field in [&commodity.code, &place.code, &place.name] {
                    csv_field(&mut out, field);
                    out.push(',');
                }
                let _ = write!(out, "{},", r.market_year);
                for field in [&attribute.id, &attribute.name, month] {
                    csv_field(&mut out, field);
                    out.push(',');
                }
                number(&mut out, r.previous_value, "");
                out.push(',');
                number(&mut out, r.value, "");
                out.push(',');
                number(&mut out, r.change, "");
                out.push_str("\r\n");
            }
        }
    }
    if format == Format::Json {
        out.push_str("]}");
    }
    out
}

/// A JSON error body: `{"error": "..."}`.
pub fn error(message: &str) -> String {
    let mut out = String::from("{\"error\":");
    json_str(&mut out, message);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
        let parsed: String = serde_json::from_str(&s).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn numbers_read_back_exactly() {
        for v in [0.0, 170000.0, 0.1 + 0.2, 1e21, -3.5e-7, 123456789.123] {
            let mut s = String::new();
            number(&mut s, v, "null");
            let back: f64 = serde_json::from_str(&s).unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{s}");
        }
        assert_eq!(plain_number(f64::NAN), "");
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut s = String::new();
        csv_field(&mut s, "Korea, South");
        s.push(',');
        csv_field(&mut s, "plain");
        s.push(',');
        csv_field(&mut s, "say \"hi\"");
        assert_eq!(s, "\"Korea, South\",plain,\"say \"\"hi\"\"\"");
    }
}
