//! One serving generation, read once into memory: every commodity's world balance, every
//! country's balance history, and every revision, indexed the way the pages and the API ask.
//!
//! Three queries read the serving tables whole (columns through Arrow, so the row count costs
//! little), each sorted by DuckDB into the order the answers need. Values are kept as DuckDB
//! gave them (`f64`; NULL as NaN, which no serving value is and JSON cannot carry), so answers
//! carry the serving tables' values exactly. Nothing here is ever written back.

use std::collections::HashMap;
use std::time::SystemTime;

use serving_reader::duckdb::Connection;
use serving_reader::duckdb::arrow::array::{
    Array, Float64Array, Int32Array, Int64Array, LargeStringArray, StringArray, StringViewArray,
};
use serving_reader::duckdb::arrow::record_batch::RecordBatch;
use serving_reader::{Generation, PrepareError};
use sha2::{Digest, Sha256};

use crate::answer::AnswerCache;
use crate::format::value;

/// The measures of a balance row, in the order of the API's rows.
pub const MEASURES: [&str; 9] = [
    "beginning_stocks",
    "production",
    "imports",
    "total_supply",
    "exports",
    "domestic_consumption",
    "ending_stocks",
    "total_distribution",
    "stocks_to_use",
];
pub const PRODUCTION: usize = 1;
pub const IMPORTS: usize = 2;
pub const EXPORTS: usize = 4;
pub const DOMESTIC_CONSUMPTION: usize = 5;
pub const ENDING_STOCKS: usize = 6;
pub const STOCKS_TO_USE: usize = 8;

/// Measures of one row; NaN where the serving table has NULL.
pub type Measures = [f64; 9];

#[derive(Debug)]
pub struct WorldRow {
    pub market_year: i32,
    pub m: Measures,
    pub country_count: Option<i64>,
    /// Countries that reported each of the eight measures (`country_count_<measure>`); `None`
    /// when the serving file predates these columns.
    pub counts: [Option<i64>; 8],
}

#[derive(Debug)]
pub struct BalanceRow {
    pub market_year: i32,
    pub m: Measures,
}

#[derive(Debug)]
pub struct Country {
    pub code: String,
    pub name: String,
    /// The unit of its latest row.
    pub unit: String,
    /// Ascending market year.
    pub rows: Vec<BalanceRow>,
    /// Indices into [`Data::revisions`], newest first.
    pub revisions: Vec<u32>,
}

impl Country {
    pub fn row(&self, market_year: i32) -> Option<&BalanceRow> {
        self.rows
            .binary_search_by_key(&market_year, |r| r.market_year)
            .ok()
            .map(|i| &self.rows[i])
    }
}

#[derive(Debug)]
pub struct Commodity {
    pub code: String,
    pub name: String,
    /// The unit of the world balance's latest market year.
    pub unit: String,
    pub first_year: i32,
    pub last_year: i32,
    /// Ascending market year.
    pub world: Vec<WorldRow>,
    /// By country code.
    pub countries: Vec<Country>,
    by_country: HashMap<String, usize>,
    /// Indices into [`Data::revisions`], newest first.
    pub revisions: Vec<u32>,
}

impl Commodity {
    /// The position of country `code` in [`Commodity::countries`].
    pub fn country_index(&self, code: &str) -> Option<usize> {
        self.by_country.get(code).copied()
    }

    /// The countries with a row in `market_year`, by production descending (NULL last), then
    /// by country code.
    pub fn year(&self, market_year: i32) -> Vec<(&Country, &BalanceRow)> {
        let mut rows: Vec<(&Country, &BalanceRow)> = self
            .countries
            .iter()
            .filter_map(|c| c.row(market_year).map(|r| (c, r)))
            .collect();
        rows.sort_by(|(a, ra), (b, rb)| {
            let (pa, pb) = (value(ra.m[PRODUCTION]), value(rb.m[PRODUCTION]));
            match (pa, pb) {
                (Some(x), Some(y)) => y.total_cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
            .then_with(|| a.code.cmp(&b.code))
        });
        rows
    }
}

/// A change of coverage above this share between two market years is marked on the pages: a
/// world sum over more (or fewer) countries is not a change in the market.
pub const COVERAGE_CHANGE_RATIO: f64 = 0.10;

/// A market year where the number of countries reporting a measure changed by more than
/// [`COVERAGE_CHANGE_RATIO`] from the year before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverageBreak {
    pub market_year: i32,
    /// Index into [`MEASURES`].
    pub measure: usize,
    pub from: i64,
    pub to: i64,
}

/// The coverage breaks of world rows (ascending market year), by year then measure.
pub fn coverage_breaks(world: &[WorldRow]) -> Vec<CoverageBreak> {
    let mut out = Vec::new();
    for pair in world.windows(2) {
        for measure in 0..8 {
            let (Some(from), Some(to)) = (pair[0].counts[measure], pair[1].counts[measure]) else {
                continue;
            };
            let changed = if from == 0 {
                to > 0
            } else {
                (to - from).abs() as f64 / from as f64 > COVERAGE_CHANGE_RATIO
            };
            if changed {
                out.push(CoverageBreak {
                    market_year: pair[1].market_year,
                    measure,
                    from,
                    to,
                });
            }
        }
    }
    out
}

/// A country as revisions name it: code and the name the revised snapshot gave.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Place {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    pub id: String,
    pub name: String,
}

/// One row of `serving.estimate_revisions`, its repeated texts interned.
#[derive(Debug)]
pub struct Revision {
    pub commodity: u32,
    pub place: u32,
    pub market_year: i32,
    pub attribute: u32,
    pub month: u32,
    pub previous_value: f64,
    pub value: f64,
    pub change: f64,
}

/// A generation, prepared.
pub struct Data {
    pub exported_at: SystemTime,
    /// ISO-8601 UTC with milliseconds, e.g. `2026-11-21T12:00:00.123Z`.
    pub exported_at_iso: String,
    /// `ETag` and `Last-Modified` of every answer derived from this generation.
    pub etag: String,
    pub last_modified: String,
    /// By commodity code.
    pub commodities: Vec<Commodity>,
    by_code: HashMap<String, usize>,
    /// Every country of any commodity, by code, with its latest name.
    pub countries: Vec<(String, String)>,
    by_country: HashMap<String, usize>,
    pub places: Vec<Place>,
    pub attributes: Vec<Attribute>,
    /// `revised_in` texts (`YYYY-MM`).
    pub months: Vec<String>,
    /// Newest `revised_in` first, then commodity code, country code, market year descending,
    /// attribute id.
    pub revisions: Vec<Revision>,
    pub answers: AnswerCache,
    /// Releases from `serving.value_history`; `None` when the serving file has no such table.
    pub releases: Option<Vec<Release>>,
    /// Monthly prices from `serving.coffee_prices`, by series then month; `None` when the
    /// serving file has no such table.
    pub prices: Option<Vec<Price>>,
}

/// A release: its `YYYY-MM` and the landing file that is its final state.
#[derive(Debug, Clone)]
pub struct Release {
    pub release: String,
    pub landing_sha256: String,
}

/// One month of one price series (`serving.coffee_prices`).
#[derive(Debug, Clone)]
pub struct Price {
    /// `YYYY-MM`.
    pub month: String,
    pub year: i32,
    /// 1 to 12.
    pub month_of_year: u32,
    pub series: String,
    pub value: f64,
    pub unit: String,
}

impl Data {
    /// The position of commodity `code` in [`Data::commodities`].
    pub fn commodity_index(&self, code: &str) -> Option<usize> {
        self.by_code.get(code).copied()
    }

    pub fn country_name(&self, code: &str) -> Option<&str> {
        self.by_country
            .get(code)
            .map(|&i| self.countries[i].1.as_str())
    }

    /// Reads the generation `conn` is open on. Runs on a blocking thread, under the
    /// follower's time bound.
    pub fn read(conn: &Connection, generation: &Generation) -> Result<Data, PrepareError> {
        let exported_at = parse_exported_at(&generation.exported_at)?;
        let exported_at_iso = humantime::format_rfc3339_millis(exported_at).to_string();
        let mut data = Data {
            exported_at,
            exported_at_iso,
            etag: etag(generation),
            last_modified: httpdate::fmt_http_date(exported_at),
            commodities: Vec::new(),
            by_code: HashMap::new(),
            countries: Vec::new(),
            by_country: HashMap::new(),
            places: Vec::new(),
            attributes: Vec::new(),
            months: Vec::new(),
            revisions: Vec::new(),
            answers: AnswerCache::default(),
            releases: None,
            prices: None,
        };
        // One DuckDB thread and a small memory budget: the read runs beside the request
        // workers on a small server, and what it reads fits in memory many times over.
        conn.execute_batch(&format!(
            "SET threads = 1; SET memory_limit = '{}MB'; SET preserve_insertion_order = false;",
            crate::limits::GENERATION_READ_MEMORY_MIB
        ))?;
        data.read_world(conn)?;
        data.read_balances(conn)?;
        data.read_revisions(conn)?;
        data.index_countries();
        if has_table(conn, "value_history")? {
            data.releases = Some(read_releases(conn)?);
        }
        if has_table(conn, "coffee_prices")? {
            data.prices = Some(read_prices(conn)?);
        }
        Ok(data)
    }

    fn read_world(&mut self, conn: &Connection) -> Result<(), PrepareError> {
        // Per-measure counts came later: a file without them is read with NULLs.
        let has_counts: bool = conn.query_row(
            "SELECT count(*) = 8 FROM duckdb_columns()
              WHERE schema_name = 'serving' AND table_name = 'global_balance'
                AND column_name LIKE 'country\\_count\\_%' ESCAPE '\\'",
            [],
            |r| r.get(0),
        )?;
        let counts = MEASURES[..8]
            .iter()
            .map(|m| {
                if has_counts {
                    format!("CAST(country_count_{m} AS BIGINT)")
                } else {
                    "CAST(NULL AS BIGINT)".to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT CAST(commodity_code AS VARCHAR), CAST(commodity AS VARCHAR),
                    CAST(market_year AS INTEGER), CAST(unit AS VARCHAR), {},
                    CAST(country_count AS BIGINT), {counts}
               FROM serving.global_balance
              ORDER BY commodity_code, market_year",
            measure_columns()
        );
        for_each_batch(conn, &sql, |batch| {
            let code = Text::of(batch, 0, "commodity_code")?;
            let name = Text::of(batch, 1, "commodity")?;
            let year = int32(batch, 2, "market_year")?;
            let unit = Text::of(batch, 3, "unit")?;
            let measures = measure_arrays(batch, 4)?;
            let count = int64(batch, 13, "country_count")?;
            let per_measure = (0..8)
                .map(|k| int64(batch, 14 + k, "country_count_<measure>"))
                .collect::<Result<Vec<_>, _>>()?;
            for i in 0..batch.num_rows() {
                let Some(code) = code.get(i) else { continue };
                let Some(market_year) = (!year.is_null(i)).then(|| year.value(i)) else {
                    continue;
                };
                if self.commodities.last().is_none_or(|c| c.code != code) {
                    self.by_code.insert(code.to_owned(), self.commodities.len());
                    self.commodities.push(Commodity {
                        code: code.to_owned(),
                        name: String::new(),
                        unit: String::new(),
                        first_year: market_year,
                        last_year: market_year,
                        world: Vec::new(),
                        countries: Vec::new(),
                        by_country: HashMap::new(),
                        revisions: Vec::new(),
                    });
                }
                let commodity = self.commodities.last_mut().expect("pushed above");
                // Rows come by ascending year: the last one names the commodity and its unit.
                commodity.name = name.get(i).unwrap_or(code).to_owned();
                commodity.unit = unit.get(i).unwrap_or_default().to_owned();
                commodity.last_year = market_year;
                commodity.world.push(WorldRow {
                    market_year,
                    m: measures_at(&measures, i),
                    country_count: (!count.is_null(i)).then(|| count.value(i)),
                    counts: std::array::from_fn(|k| {
                        (!per_measure[k].is_null(i)).then(|| per_measure[k].value(i))
                    }),
                });
            }
            Ok(())
        })?;
        Ok(())
    }

    fn read_balances(&mut self, conn: &Connection) -> Result<(), PrepareError> {
        let sql = format!(
            "SELECT CAST(commodity_code AS VARCHAR), CAST(country_code AS VARCHAR),
                    CAST(country AS VARCHAR), CAST(market_year AS INTEGER), CAST(unit AS VARCHAR), {}
               FROM serving.commodity_balance
              ORDER BY commodity_code, country_code, market_year",
            measure_columns()
        );
        let mut at: Option<usize> = None;
        for_each_batch(conn, &sql, |batch| {
            let code = Text::of(batch, 0, "commodity_code")?;
            let country_code = Text::of(batch, 1, "country_code")?;
            let country = Text::of(batch, 2, "country")?;
            let year = int32(batch, 3, "market_year")?;
            let unit = Text::of(batch, 4, "unit")?;
            let measures = measure_arrays(batch, 5)?;
            for i in 0..batch.num_rows() {
                let (Some(code), Some(cc)) = (code.get(i), country_code.get(i)) else {
                    continue;
                };
                let Some(market_year) = (!year.is_null(i)).then(|| year.value(i)) else {
                    continue;
                };
                if at.is_none_or(|c| self.commodities[c].code != code) {
                    // A commodity without a world balance row has no page; its rows are skipped.
                    at = self.by_code.get(code).copied();
                }
                let Some(c) = at else { continue };
                let commodity = &mut self.commodities[c];
                if commodity.countries.last().is_none_or(|k| k.code != cc) {
                    commodity
                        .by_country
                        .insert(cc.to_owned(), commodity.countries.len());
                    commodity.countries.push(Country {
                        code: cc.to_owned(),
                        name: String::new(),
                        unit: String::new(),
                        rows: Vec::new(),
                        revisions: Vec::new(),
                    });
                }
                let entry = commodity.countries.last_mut().expect("pushed above");
                entry.name = country.get(i).unwrap_or(cc).to_owned();
                entry.unit = unit.get(i).unwrap_or_default().to_owned();
                entry.rows.push(BalanceRow {
                    market_year,
                    m: measures_at(&measures, i),
                });
            }
            Ok(())
        })?;
        Ok(())
    }

    fn read_revisions(&mut self, conn: &Connection) -> Result<(), PrepareError> {
        let sql = "SELECT CAST(commodity_code AS VARCHAR), CAST(country_code AS VARCHAR),
                          CAST(country AS VARCHAR), CAST(market_year AS INTEGER),
                          CAST(attribute_id AS VARCHAR), CAST(attribute AS VARCHAR),
                          CAST(revised_in AS VARCHAR), CAST(previous_value AS DOUBLE),
                          CAST(value AS DOUBLE), CAST(change AS DOUBLE)
                     FROM serving.estimate_revisions
                    ORDER BY revised_in DESC, commodity_code, country_code, market_year DESC,
                             attribute_id";
        let mut places: HashMap<Place, u32> = HashMap::new();
        let mut attributes: HashMap<Attribute, u32> = HashMap::new();
        let mut months: HashMap<String, u32> = HashMap::new();
        for_each_batch(conn, sql, |batch| {
            let code = Text::of(batch, 0, "commodity_code")?;
            let country_code = Text::of(batch, 1, "country_code")?;
            let country = Text::of(batch, 2, "country")?;
            let year = int32(batch, 3, "market_year")?;
            let attribute_id = Text::of(batch, 4, "attribute_id")?;
            let attribute = Text::of(batch, 5, "attribute")?;
            let revised_in = Text::of(batch, 6, "revised_in")?;
            let previous = float64(batch, 7, "previous_value")?;
            let value_col = float64(batch, 8, "value")?;
            let change = float64(batch, 9, "change")?;
            for i in 0..batch.num_rows() {
                let (Some(code), Some(cc), Some(id), Some(month)) = (
                    code.get(i),
                    country_code.get(i),
                    attribute_id.get(i),
                    revised_in.get(i),
                ) else {
                    continue;
                };
                let Some(c) = self.by_code.get(code).copied() else {
                    continue;
                };
                let Some(market_year) = (!year.is_null(i)).then(|| year.value(i)) else {
                    continue;
                };
                let place = Place {
                    code: cc.to_owned(),
                    name: country.get(i).unwrap_or(cc).to_owned(),
                };
                let place = intern(&mut places, &mut self.places, place);
                let attribute = Attribute {
                    id: id.to_owned(),
                    name: attribute.get(i).unwrap_or(id).to_owned(),
                };
                let attribute = intern(&mut attributes, &mut self.attributes, attribute);
                let month = intern(&mut months, &mut self.months, month.to_owned());
                let index = u32::try_from(self.revisions.len())?;
                self.revisions.push(Revision {
                    commodity: u32::try_from(c)?,
                    place,
                    market_year,
                    attribute,
                    month,
                    previous_value: at(previous, i),
                    value: at(value_col, i),
                    change: at(change, i),
                });
                let commodity = &mut self.commodities[c];
                commodity.revisions.push(index);
                let k = match commodity.by_country.get(cc) {
                    Some(&k) => k,
                    None => {
                        // Revised, yet without a balance row: known, with an empty history.
                        commodity
                            .by_country
                            .insert(cc.to_owned(), commodity.countries.len());
                        commodity.countries.push(Country {
                            code: cc.to_owned(),
                            name: self.places[place as usize].name.clone(),
                            unit: String::new(),
                            rows: Vec::new(),
                            revisions: Vec::new(),
                        });
                        commodity.countries.len() - 1
                    }
                };
                commodity.countries[k].revisions.push(index);
            }
            Ok(())
        })?;
        for commodity in &mut self.commodities {
            // Countries added by revisions came last: restore the order by code.
            commodity.countries.sort_by(|a, b| a.code.cmp(&b.code));
            commodity.by_country = commodity
                .countries
                .iter()
                .enumerate()
                .map(|(i, k)| (k.code.clone(), i))
                .collect();
        }
        Ok(())
    }

    fn index_countries(&mut self) {
        let mut all: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
        for commodity in &self.commodities {
            for country in &commodity.countries {
                all.entry(&country.code).or_insert(&country.name);
            }
        }
        self.countries = all
            .into_iter()
            .map(|(c, n)| (c.to_owned(), n.to_owned()))
            .collect();
        self.by_country = self
            .countries
            .iter()
            .enumerate()
            .map(|(i, (c, _))| (c.clone(), i))
            .collect();
    }
}

/// Whether the serving file has table (or view) `serving.<name>`: the tables other steps add
/// later are optional, and the pages say when one is absent.
fn has_table(conn: &Connection, name: &str) -> Result<bool, PrepareError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'serving' AND table_name = ?",
        [name],
        |r| r.get(0),
    )?;
    let v: i64 = conn.query_row(
        "SELECT count(*) FROM duckdb_views() WHERE schema_name = 'serving' AND view_name = ?",
        [name],
        |r| r.get(0),
    )?;
    Ok(n + v > 0)
}

/// The releases in the history, oldest first; a release's landing file is the one its rows
/// came from (the later landed when two share a release).
fn read_releases(conn: &Connection) -> Result<Vec<Release>, PrepareError> {
    let mut out = Vec::new();
    for_each_batch(
        conn,
        "SELECT CAST(valid_from_release AS VARCHAR), CAST(max(landing_sha256) AS VARCHAR)
           FROM serving.value_history
          WHERE valid_from_release IS NOT NULL
          GROUP BY valid_from_release ORDER BY valid_from_release",
        |batch| {
            let release = Text::of(batch, 0, "valid_from_release")?;
            let sha = Text::of(batch, 1, "landing_sha256")?;
            for i in 0..batch.num_rows() {
                if let Some(r) = release.get(i) {
                    out.push(Release {
                        release: r.to_owned(),
                        landing_sha256: sha.get(i).unwrap_or_default().to_owned(),
                    });
                }
            }
            Ok(())
        },
    )?;
    Ok(out)
}

fn read_prices(conn: &Connection) -> Result<Vec<Price>, PrepareError> {
    let mut out = Vec::new();
    for_each_batch(
        conn,
        "SELECT CAST(strftime(month, '%Y-%m') AS VARCHAR), CAST(series AS VARCHAR),
                CAST(value AS DOUBLE), CAST(unit AS VARCHAR)
           FROM serving.coffee_prices
          WHERE month IS NOT NULL AND series IS NOT NULL
          ORDER BY series, month",
        |batch| {
            let month = Text::of(batch, 0, "month")?;
            let series = Text::of(batch, 1, "series")?;
            let value = float64(batch, 2, "value")?;
            let unit = Text::of(batch, 3, "unit")?;
            for i in 0..batch.num_rows() {
                let (Some(m), Some(sr)) = (month.get(i), series.get(i)) else {
                    continue;
                };
                let (Some(year), Some(month_of_year)) = (
                    m.get(..4).and_then(|y| y.parse().ok()),
                    m.get(5..7).and_then(|mm| mm.parse().ok()),
                ) else {
                    continue;
                };
                out.push(Price {
                    month: m.to_owned(),
                    year,
                    month_of_year,
                    series: sr.to_owned(),
                    value: at(value, i),
                    unit: unit.get(i).unwrap_or_default().to_owned(),
                });
            }
            Ok(())
        },
    )?;
    Ok(out)
}

fn intern<T: Clone + Eq + std::hash::Hash>(
    map: &mut HashMap<T, u32>,
    list: &mut Vec<T>,
    item: T,
) -> u32 {
    if let Some(&i) = map.get(&item) {
        return i;
    }
    let i = list.len() as u32;
    list.push(item.clone());
    map.insert(item, i);
    i
}

fn measure_columns() -> String {
    MEASURES
        .iter()
        .map(|m| format!("CAST({m} AS DOUBLE)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `_materia_export.exported_at` as DuckDB prints a TIMESTAMP (UTC):
/// `2026-11-21 12:00:00.123`, without the fraction when it is zero.
fn parse_exported_at(text: &str) -> Result<SystemTime, PrepareError> {
    if text.is_empty() {
        return Err("the serving file has no _materia_export record".into());
    }
    humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("_materia_export.exported_at {text:?} is not a timestamp: {e}").into())
}

/// The validator of every answer from this generation and this build: a new generation or a
/// new release changes it.
fn etag(generation: &Generation) -> String {
    let mut h = Sha256::new();
    h.update(crate::assets::build_id().as_bytes());
    h.update(generation.exported_at.as_bytes());
    h.update(generation.source_path.as_bytes());
    for t in &generation.tables {
        h.update(t.table_name.as_bytes());
        h.update(t.row_count.to_le_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("W/\"{hex}\"")
}

/// Runs `sql` and hands each result batch to `f` as DuckDB streams it (the result is never
/// held whole). duckdb-rs panics when a batch cannot be fetched after the query started (an
/// interrupt at the time bound): that is caught here and becomes an error.
fn for_each_batch(
    conn: &Connection,
    sql: &str,
    mut f: impl FnMut(&RecordBatch) -> Result<(), PrepareError>,
) -> Result<(), PrepareError> {
    let mut stmt = conn.prepare(sql)?;
    let mut batches = stmt.stream_arrow([])?;
    loop {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| batches.next())) {
            Ok(Some(batch)) => f(&batch)?,
            Ok(None) => return Ok(()),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic in the DuckDB binding");
                return Err(format!("reading the result failed: {why}").into());
            }
        }
    }
}

/// A text column, whichever of Arrow's string layouts DuckDB chose.
enum Text<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl<'a> Text<'a> {
    fn of(batch: &'a RecordBatch, i: usize, name: &str) -> Result<Text<'a>, PrepareError> {
        let col = batch.column(i).as_any();
        if let Some(a) = col.downcast_ref::<StringArray>() {
            Ok(Text::Utf8(a))
        } else if let Some(a) = col.downcast_ref::<LargeStringArray>() {
            Ok(Text::Large(a))
        } else if let Some(a) = col.downcast_ref::<StringViewArray>() {
            Ok(Text::View(a))
        } else {
            Err(type_error(batch, i, name, "text"))
        }
    }

    fn get(&self, row: usize) -> Option<&'a str> {
        match self {
            Text::Utf8(a) => (!a.is_null(row)).then(|| a.value(row)),
            Text::Large(a) => (!a.is_null(row)).then(|| a.value(row)),
            Text::View(a) => (!a.is_null(row)).then(|| a.value(row)),
        }
    }
}

fn type_error(batch: &RecordBatch, i: usize, name: &str, expected: &str) -> PrepareError {
    format!(
        "column {name} came as {}, expected {expected}",
        batch.column(i).data_type()
    )
    .into()
}

fn float64<'a>(
    batch: &'a RecordBatch,
    i: usize,
    name: &str,
) -> Result<&'a Float64Array, PrepareError> {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| type_error(batch, i, name, "DOUBLE"))
}

fn int32<'a>(batch: &'a RecordBatch, i: usize, name: &str) -> Result<&'a Int32Array, PrepareError> {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| type_error(batch, i, name, "INTEGER"))
}

fn int64<'a>(batch: &'a RecordBatch, i: usize, name: &str) -> Result<&'a Int64Array, PrepareError> {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| type_error(batch, i, name, "BIGINT"))
}

fn measure_arrays(batch: &RecordBatch, first: usize) -> Result<Vec<&Float64Array>, PrepareError> {
    MEASURES
        .iter()
        .enumerate()
        .map(|(k, name)| float64(batch, first + k, name))
        .collect()
}

fn at(a: &Float64Array, i: usize) -> f64 {
    if a.is_null(i) { f64::NAN } else { a.value(i) }
}

fn measures_at(arrays: &[&Float64Array], i: usize) -> Measures {
    let mut m = [f64::NAN; 9];
    for (k, a) in arrays.iter().enumerate() {
        m[k] = at(a, i);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(year: i32, consumption: f64, counts: [i64; 8]) -> WorldRow {
        let mut m = [f64::NAN; 9];
        m[DOMESTIC_CONSUMPTION] = consumption;
        WorldRow {
            market_year: year,
            m,
            country_count: Some(counts.iter().copied().max().unwrap_or(0)),
            counts: counts.map(Some),
        }
    }

    /// PSD coffee, as landed: world domestic consumption jumps from 27,575 to 114,625
    /// thousand bags between 2001/02 and 2002/03 because 51 countries report it, then 76.
    #[test]
    fn the_2001_to_2002_coffee_coverage_break_is_flagged() {
        let rows = [
            world(2000, 27_210.0, [60, 77, 70, 77, 70, 51, 60, 77]),
            world(2001, 27_575.0, [60, 77, 70, 77, 70, 51, 60, 77]),
            world(2002, 114_625.0, [62, 78, 72, 78, 72, 76, 62, 78]),
            world(2003, 116_000.0, [62, 78, 72, 78, 72, 77, 62, 78]),
        ];
        let breaks = coverage_breaks(&rows);
        assert_eq!(
            breaks,
            vec![CoverageBreak {
                market_year: 2002,
                measure: DOMESTIC_CONSUMPTION,
                from: 51,
                to: 76
            }]
        );
        // Without per-measure counts (an older serving file) nothing is flagged.
        let mut old = rows;
        for r in &mut old {
            r.counts = [None; 8];
        }
        assert!(coverage_breaks(&old).is_empty());
    }

    #[test]
    fn exported_at_parses_with_and_without_a_fraction() {
        let t = parse_exported_at("2026-11-21 12:00:00.123").unwrap();
        assert_eq!(
            humantime::format_rfc3339_millis(t).to_string(),
            "2026-11-21T12:00:00.123Z"
        );
        let t = parse_exported_at("2026-11-21 12:00:00").unwrap();
        assert_eq!(
            humantime::format_rfc3339_millis(t).to_string(),
            "2026-11-21T12:00:00.000Z"
        );
        assert!(parse_exported_at("").is_err());
        assert!(parse_exported_at("yesterday").is_err());
    }
}
