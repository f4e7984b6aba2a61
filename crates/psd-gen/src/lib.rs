//! Deterministic generator of realistic USDA PSD bulk files, at any scale up to the real one.
//!
//! The same [`Spec`] always yields the same CSV bytes. What it covers, because the pipeline must
//! handle it: the 12 real columns; the eight balance-sheet attributes with real IDs and names,
//! consistent (supply = stocks + production + imports = distribution); 69 attributes over 30
//! commodities in 11 families with their own units (`(1000 MT)`, `(1000 60 KG BAGS)`,
//! `(1000 480 lb. Bales)`...); 150 countries including `NA` (Netherlands Antilles) and names with
//! commas; quoting only where needed (`"Rst,Ground Dom. Consum"`); empty values; `Month` `00`
//! for old years; a UTF-8 BOM and CRLF line ends.
//!
//! Snapshots model monthly releases: snapshot `s` is released in month `s` after January 2026,
//! and revises values of the three most recent market years for about a third of the
//! commodity/country pairs, stamping those years with the release's Calendar_Year/Month.

mod catalog;

use std::io::{self, BufWriter, Seek, Write};

pub use catalog::{ATTRIBUTES, COMMODITIES};
use catalog::{COUNTRY_COUNT, NAMED_COUNTRIES, Profile, Unit};

/// Rows of the real bulk file, give or take: the default scale.
pub const FULL_ROWS: u64 = 2_100_000;
pub const FIRST_YEAR: u16 = 1960;
pub const LAST_YEAR: u16 = 2026;
/// Market years that each snapshot may revise.
pub const REVISED_YEARS: u16 = 3;
/// The name of the CSV entry inside the zip, as upstream names it.
pub const ENTRY_NAME: &str = "psd_alldata.csv";

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Row budget: the output has whole country-years of every commodity up to this many rows
    /// (at most the full universe); a budget below the smallest plan is cut at exactly `rows`.
    pub rows: u64,
    /// Varies the values, never the structure.
    pub seed: u64,
    /// Monthly release number, 0 for January 2026.
    pub snapshot: u32,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            rows: FULL_ROWS,
            seed: 1,
            snapshot: 0,
        }
    }
}

/// Calendar year and month of a snapshot's release.
pub fn release(snapshot: u32) -> (u16, u8) {
    let months = snapshot as u16;
    (LAST_YEAR + months / 12, 1 + (months % 12) as u8)
}

fn mix(mut z: u64) -> u64 {
    // SplitMix64 finaliser: a fixed, well-distributed hash, stable across versions.
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5EED, |acc, &p| mix(acc ^ p))
}

/// A uniform number in [0, 1) from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Quotes a field only when CSV needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

pub fn countries() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = NAMED_COUNTRIES
        .iter()
        .map(|(c, n)| ((*c).to_owned(), (*n).to_owned()))
        .collect();
    let used: Vec<&str> = NAMED_COUNTRIES.iter().map(|(c, _)| *c).collect();
    'outer: for a in b'A'..=b'Z' {
        for b in b'A'..=b'Z' {
            if out.len() >= COUNTRY_COUNT {
                break 'outer;
            }
            let code = String::from_utf8(vec![a, b]).expect("ascii");
            if !used.contains(&code.as_str()) {
                out.push((code.clone(), format!("Region {code}")));
            }
        }
    }
    out
}

/// Which countries report each commodity, and which years, for a row budget.
struct Plan {
    years: std::ops::RangeInclusive<u16>,
    /// Per commodity: country indices, sorted by country code.
    countries: Vec<Vec<usize>>,
    /// Per commodity: (attribute index, unit), sorted by attribute id.
    attributes: Vec<Vec<(usize, Unit)>>,
}

fn attributes_of(profile: &Profile) -> Vec<(usize, Unit)> {
    let mut attrs: Vec<(usize, Unit)> = (0..8).map(|i| (i, profile.unit)).collect();
    attrs.extend_from_slice(profile.extras);
    attrs.sort_by_key(|(i, _)| ATTRIBUTES[*i].0);
    attrs
}

fn plan(rows: u64, countries: &[(String, String)]) -> Plan {
    let attributes: Vec<Vec<(usize, Unit)>> = COMMODITIES
        .iter()
        .map(|(_, _, p)| attributes_of(p))
        .collect();
    // The full universe: about 75% of countries report each commodity; the first three named
    // ones (NA, KS, BR) report every commodity, so edge cases survive any scale.
    let full: Vec<Vec<usize>> = (0..COMMODITIES.len())
        .map(|c| {
            (0..countries.len())
                .filter(|&k| k < 3 || hash(&[c as u64, k as u64]) % 100 < 75)
                .collect()
        })
        .collect();
    let all_years = u64::from(LAST_YEAR - FIRST_YEAR + 1);
    let attrs_per_country_year: u64 = attributes.iter().map(|a| a.len() as u64).sum();
    let full_rows: u64 = full
        .iter()
        .zip(&attributes)
        .map(|(k, a)| (k.len() * a.len()) as u64 * all_years)
        .sum();

    let (years, cap) = if rows >= full_rows {
        (all_years, usize::MAX)
    } else {
        // Whole country-years that fit the budget, so that every commodity appears; only a
        // budget below the smallest plan (3 countries, 4 years) is cut short mid-way.
        let years = (rows / (attrs_per_country_year * 3)).clamp(4, all_years);
        let cap = ((rows / (attrs_per_country_year * years)) as usize).max(3);
        (years, cap)
    };
    // Leftover budget goes to one more country for as many commodities as it covers.
    let mut budget = rows;
    let mut caps: Vec<usize> = full.iter().map(|ks| ks.len().min(cap)).collect();
    for (c, k) in caps.iter().enumerate() {
        budget = budget.saturating_sub((*k * attributes[c].len()) as u64 * years);
    }
    for (c, k) in caps.iter_mut().enumerate() {
        let block = attributes[c].len() as u64 * years;
        if *k < full[c].len() && block <= budget {
            *k += 1;
            budget -= block;
        }
    }
    let countries = full
        .into_iter()
        .zip(caps)
        .map(|(mut ks, cap)| {
            ks.truncate(cap);
            ks.sort_by(|&a, &b| countries[a].0.cmp(&countries[b].0));
            ks
        })
        .collect();
    Plan {
        years: (LAST_YEAR - years as u16 + 1)..=LAST_YEAR,
        countries,
        attributes,
    }
}

/// The balance of one commodity, country and market year.
#[derive(Debug, Clone, Copy, Default)]
struct Balance {
    beginning: f64,
    production: f64,
    imports: Option<f64>,
    exports: f64,
    domestic: f64,
    ending: f64,
}

impl Balance {
    fn supply(&self) -> f64 {
        self.beginning + self.production + self.imports.unwrap_or(0.0)
    }
}

/// Writes the CSV and returns the number of data rows written.
pub fn write_csv<W: Write>(spec: &Spec, out: W) -> io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let countries = countries();
    let plan = plan(spec.rows, &countries);
    let commodity_fields: Vec<(String, String)> = COMMODITIES
        .iter()
        .map(|(code, name, _)| ((*code).to_owned(), csv_field(name)))
        .collect();
    let country_fields: Vec<(String, String)> = countries
        .iter()
        .map(|(c, n)| (c.clone(), csv_field(n)))
        .collect();
    let attribute_fields: Vec<String> = ATTRIBUTES.iter().map(|(_, n)| csv_field(n)).collect();
    let (rel_year, rel_month) = release(spec.snapshot);
    let old_before = LAST_YEAR - (plan.years.end() - plan.years.start()) * 2 / 3;
    let revised_from = LAST_YEAR + 1 - REVISED_YEARS;

    out.write_all(b"\xEF\xBB\xBF")?;
    out.write_all(psd_format::COLUMNS.join(",").as_bytes())?;
    out.write_all(b"\r\n")?;
    let mut written = 0u64;
    let mut line = String::with_capacity(256);
    for (c, (code, name)) in commodity_fields.iter().enumerate() {
        for &k in &plan.countries[c] {
            let (country_code, country_name) = &country_fields[k];
            let size = 20.0 + (hash(&[spec.seed, c as u64, k as u64]) % 5000) as f64;
            let mut previous_ending: Option<f64> = None;
            for year in plan.years.clone() {
                let y = u64::from(year);
                let h = |salt: u64| hash(&[spec.seed, c as u64, k as u64, y, salt]);
                let mut b = Balance::default();
                let growth = 1.0 + f64::from(year - FIRST_YEAR) * 0.02;
                b.production = (size * growth * (0.7 + 0.6 * unit(h(1)))).round();
                b.beginning = previous_ending.unwrap_or_else(|| (b.production * 0.1).round());
                b.imports = (!(h(2) % 17 == 0 && year < old_before))
                    .then(|| (size * 0.3 * unit(h(3))).round());
                let mut export_share = 0.1 + 0.3 * unit(h(4));
                let mut domestic_share = 0.4 + 0.4 * unit(h(5));
                if year >= revised_from && spec.snapshot > 0 {
                    // A release revises a third of the recent balances, by up to ±5%.
                    for s in 1..=u64::from(spec.snapshot) {
                        let r = h(100 + s);
                        if r % 3 == 0 {
                            b.production = (b.production * (0.95 + 0.1 * unit(mix(r)))).round();
                            export_share *= 0.97 + 0.06 * unit(mix(r ^ 1));
                            domestic_share *= 0.97 + 0.06 * unit(mix(r ^ 2));
                        }
                    }
                }
                let supply = b.supply();
                // Shares leave at least 5% of supply as stocks: ending stocks are never negative.
                let export_share = export_share.min(0.45);
                let domestic_share = domestic_share.min(0.95 - export_share);
                b.exports = (supply * export_share).round();
                b.domestic = (supply * domestic_share).round();
                b.ending = supply - b.exports - b.domestic;
                previous_ending = Some(b.ending);

                let (cal_year, month) = if year >= revised_from {
                    (rel_year, rel_month)
                } else if year < old_before {
                    (year + 1, 0)
                } else {
                    (year + 1, 10)
                };
                for &(a, (unit_id, unit_name)) in &plan.attributes[c] {
                    if written == spec.rows {
                        out.flush()?;
                        return Ok(written);
                    }
                    let value = match a {
                        0 => Some(b.beginning),
                        1 => Some(b.production),
                        2 => b.imports,
                        3 | 7 => Some(supply),
                        4 => Some(b.exports),
                        5 => Some(b.domestic),
                        6 => Some(b.ending),
                        _ => {
                            let r = h(1000 + a as u64);
                            (r % 100 != 0).then(|| size * unit(mix(r)))
                        }
                    };
                    line.clear();
                    use std::fmt::Write as _;
                    let _ = write!(
                        line,
                        "{code},{name},{country_code},{country_name},{year},{cal_year},{month:02},{},{},{unit_id},{unit_name},",
                        ATTRIBUTES[a].0, attribute_fields[a]
                    );
                    match value {
                        None => {}
                        Some(v) if unit_id == catalog::YIELD.0 || unit_id == catalog::PERCENT.0 => {
                            let _ = write!(line, "{:.2}", v / size * 3.0);
                        }
                        Some(v) => {
                            let _ = write!(line, "{}", v as i64);
                        }
                    }
                    line.push_str("\r\n");
                    out.write_all(line.as_bytes())?;
                    written += 1;
                }
            }
        }
    }
    out.flush()?;
    Ok(written)
}

/// Writes a zip with one deflated CSV entry, as upstream publishes it. Deterministic: entry
/// timestamps are fixed.
pub fn write_zip<W: Write + Seek>(spec: &Spec, out: W, level: i64) -> io::Result<u64> {
    let mut zip = zip::ZipWriter::new(out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(level))
        .last_modified_time(zip::DateTime::default())
        .large_file(false);
    zip.start_file(ENTRY_NAME, options)
        .map_err(io::Error::other)?;
    let rows = write_csv(spec, &mut zip)?;
    zip.finish().map_err(io::Error::other)?;
    Ok(rows)
}

/// Splits one line of the CSV this generator writes into its fields, quotes undone. For tests
/// that read the output back on their own, independently of the code under test.
pub fn split_csv_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    out.push(field);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_csv_line_undoes_quoting() {
        assert_eq!(
            split_csv_line(r#"0711100,"Rst,Ground Dom. Consum","say ""hi""",,x"#),
            ["0711100", "Rst,Ground Dom. Consum", "say \"hi\"", "", "x"]
        );
        assert_eq!(split_csv_line(""), [""]);
    }

    fn csv(spec: &Spec) -> String {
        let mut buf = Vec::new();
        write_csv(spec, &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn output_is_deterministic_and_within_the_row_budget() {
        let spec = Spec {
            rows: 50_000,
            seed: 7,
            snapshot: 0,
        };
        let a = csv(&spec);
        assert_eq!(a, csv(&spec));
        let rows = a.lines().count() as u64 - 1;
        assert!((25_000..=50_000).contains(&rows), "{rows}");
        assert_ne!(a, csv(&Spec { seed: 8, ..spec }));
        let tiny = csv(&Spec { rows: 100, ..spec });
        assert_eq!(
            tiny.lines().count(),
            101,
            "a budget below the smallest plan is cut exactly"
        );
    }

    #[test]
    fn output_is_valid_psd_csv_with_its_edge_cases() {
        let text = csv(&Spec {
            rows: 20_000,
            seed: 1,
            snapshot: 0,
        });
        let mut v = psd_format::CsvValidator::new();
        v.feed(text.as_bytes()).unwrap();
        assert_eq!(v.finish().unwrap().rows, text.lines().count() as u64 - 1);
        let commodities: std::collections::BTreeSet<String> = text
            .lines()
            .skip(1)
            .map(|l| split_csv_line(l)[0].clone())
            .collect();
        assert_eq!(
            commodities.len(),
            COMMODITIES.len(),
            "every commodity at small scale"
        );
        assert!(text.starts_with('\u{feff}'));
        assert!(text.contains("\r\n"));
        assert!(text.contains(",\"Rst,Ground Dom. Consum\","));
        assert!(text.contains(",NA,Netherlands Antilles,"));
        assert!(text.contains(",KS,\"Korea, South\","));
        assert!(
            text.contains("(1000 60 KG BAGS)")
                && text.contains("(1000 480 lb. Bales)")
                && text.contains("(1000 MT)")
        );
        assert!(
            text.lines().skip(1).any(|l| split_csv_line(l)[6] == "00"),
            "Month 00 rows"
        );
        assert!(text.lines().any(|l| l.ends_with(',')), "empty values");
        assert!(!text.contains("\"0711100\""), "quoting only where needed");
    }

    #[test]
    fn snapshots_revise_recent_years_with_a_later_release_date() {
        let spec = Spec {
            rows: 20_000,
            seed: 1,
            snapshot: 0,
        };
        let a = csv(&spec);
        let b = csv(&Spec {
            snapshot: 2,
            ..spec
        });
        assert_eq!(a.lines().count(), b.lines().count());
        let changed: Vec<(&str, &str)> = a.lines().zip(b.lines()).filter(|(x, y)| x != y).collect();
        assert!(!changed.is_empty());
        for (x, y) in &changed {
            let (x, y) = (split_csv_line(x), split_csv_line(y));
            let market_year: u16 = x[4].parse().unwrap();
            assert!(
                market_year > LAST_YEAR - REVISED_YEARS,
                "only recent years change: {x:?}"
            );
            assert_eq!(
                (y[5].as_str(), y[6].as_str()),
                ("2026", "03"),
                "stamped with the release"
            );
            assert_eq!(x[..5], y[..5], "same key");
        }
    }

    #[test]
    fn balance_identity_holds_per_group() {
        let text = csv(&Spec {
            rows: 3_000,
            seed: 3,
            snapshot: 1,
        });
        let mut groups: std::collections::BTreeMap<String, [Option<f64>; 8]> = Default::default();
        for line in text.lines().skip(1) {
            let f = split_csv_line(line);
            let Some(i) = ATTRIBUTES[..8].iter().position(|(id, _)| *id == f[7]) else {
                continue;
            };
            let key = format!("{}|{}|{}", f[0], f[2], f[4]);
            groups.entry(key).or_default()[i] = f[11].parse().ok();
        }
        assert!(groups.len() > 10);
        for (key, m) in &groups {
            let [
                Some(beg),
                Some(prod),
                imp,
                Some(supply),
                Some(exp),
                Some(dom),
                Some(end),
                Some(dist),
            ] = *m
            else {
                continue;
            };
            assert_eq!(supply, beg + prod + imp.unwrap_or(0.0), "{key}");
            assert_eq!(dist, exp + dom + end, "{key}");
            assert_eq!(supply, dist, "{key}");
            assert!(end >= 0.0, "ending stocks never negative: {key}");
        }
    }
}
