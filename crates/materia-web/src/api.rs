//! The JSON API's bodies (serde, derived, in the field order of the OpenAPI document), and the
//! same rows as CSV (`?format=csv`, through [`Csv`]). NULL is `null` in JSON and an empty cell
//! in CSV. The prepared data keeps NULL as NaN; [`value`] turns it into `None` here.
//!
//! serde_json writes an `f64` with `ryu`, the shortest form that reads back as the same value,
//! so JSON numbers are the serving tables' values exactly.

use serde::Serialize;

use crate::data::{Commodity, Country, Data, MEASURES, Measures, Revision, WorldRow};
use crate::format::{Csv, UnitChoice, marketing_year, scaled, value};

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

fn json(body: &impl Serialize) -> String {
    // Serializing these types cannot fail: plain structs of strings, numbers and options.
    serde_json::to_string(body).expect("API bodies serialize")
}

#[derive(Serialize)]
struct CommodityOut<'a> {
    commodity_code: &'a str,
    commodity: &'a str,
    unit: &'a str,
    first_year: i32,
    last_year: i32,
}

#[derive(Serialize)]
struct Commodities<'a> {
    commodities: Vec<CommodityOut<'a>>,
}

/// The measures of a row, named as the API names them.
#[derive(Serialize)]
struct MeasuresOut {
    beginning_stocks: Option<f64>,
    production: Option<f64>,
    imports: Option<f64>,
    total_supply: Option<f64>,
    exports: Option<f64>,
    domestic_consumption: Option<f64>,
    ending_stocks: Option<f64>,
    total_distribution: Option<f64>,
    stocks_to_use: Option<f64>,
}

impl MeasuresOut {
    /// The row's measures, quantities times `factor` (see [`UnitChoice`]).
    fn new(m: &Measures, factor: f64) -> MeasuresOut {
        let m = scaled(m, factor);
        MeasuresOut {
            beginning_stocks: value(m[0]),
            production: value(m[1]),
            imports: value(m[2]),
            total_supply: value(m[3]),
            exports: value(m[4]),
            domestic_consumption: value(m[5]),
            ending_stocks: value(m[6]),
            total_distribution: value(m[7]),
            stocks_to_use: value(m[8]),
        }
    }
}

/// Countries that reported each measure, on world rows.
#[derive(Serialize)]
struct CountsOut {
    country_count_beginning_stocks: Option<i64>,
    country_count_production: Option<i64>,
    country_count_imports: Option<i64>,
    country_count_total_supply: Option<i64>,
    country_count_exports: Option<i64>,
    country_count_domestic_consumption: Option<i64>,
    country_count_ending_stocks: Option<i64>,
    country_count_total_distribution: Option<i64>,
}

impl From<&[Option<i64>; 8]> for CountsOut {
    fn from(c: &[Option<i64>; 8]) -> CountsOut {
        CountsOut {
            country_count_beginning_stocks: c[0],
            country_count_production: c[1],
            country_count_imports: c[2],
            country_count_total_supply: c[3],
            country_count_exports: c[4],
            country_count_domestic_consumption: c[5],
            country_count_ending_stocks: c[6],
            country_count_total_distribution: c[7],
        }
    }
}

#[derive(Serialize)]
struct WorldRowOut {
    market_year: i32,
    marketing_year: String,
    #[serde(flatten)]
    m: MeasuresOut,
    country_count: Option<i64>,
    #[serde(flatten)]
    counts: CountsOut,
}

#[derive(Serialize)]
struct BalanceRowOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    country_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<&'a str>,
    market_year: i32,
    marketing_year: String,
    #[serde(flatten)]
    m: MeasuresOut,
}

#[derive(Serialize)]
struct Balance<'a, R> {
    commodity_code: &'a str,
    commodity: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    country_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<&'a str>,
    unit: &'a str,
    rows: Vec<R>,
}

#[derive(Serialize)]
struct RevisionOut<'a> {
    country_code: &'a str,
    country: &'a str,
    market_year: i32,
    marketing_year: String,
    attribute_id: &'a str,
    attribute: &'a str,
    revised_in: &'a str,
    previous_value: Option<f64>,
    value: Option<f64>,
    change: Option<f64>,
}

#[derive(Serialize)]
struct Rows<R> {
    rows: Vec<R>,
}

fn csv_measures(csv: &mut Csv, m: &Measures) {
    for v in m {
        csv.number(*v);
    }
}

fn header<'a>(leading: &[&'a str], trailing: &[&'a str]) -> Vec<&'a str> {
    leading
        .iter()
        .chain(MEASURES.iter())
        .chain(trailing.iter())
        .copied()
        .collect()
}

pub fn commodities(data: &Data, format: Format) -> String {
    match format {
        Format::Json => json(&Commodities {
            commodities: data
                .commodities
                .iter()
                .map(|c| CommodityOut {
                    commodity_code: &c.code,
                    commodity: &c.name,
                    unit: &c.unit,
                    first_year: c.first_year,
                    last_year: c.last_year,
                })
                .collect(),
        }),
        Format::Csv => {
            let mut csv = Csv::new(&[
                "commodity_code",
                "commodity",
                "unit",
                "first_year",
                "last_year",
            ]);
            for c in &data.commodities {
                csv.text(&c.code);
                csv.text(&c.name);
                csv.text(&c.unit);
                csv.int(c.first_year);
                csv.int(c.last_year);
                csv.end_row();
            }
            csv.finish()
        }
    }
}

fn world_row(r: &WorldRow, factor: f64) -> WorldRowOut {
    WorldRowOut {
        market_year: r.market_year,
        marketing_year: marketing_year(r.market_year),
        m: MeasuresOut::new(&r.m, factor),
        country_count: r.country_count,
        counts: CountsOut::from(&r.counts),
    }
}

/// The per-measure count columns of world rows.
const COUNT_COLUMNS: [&str; 8] = [
    "country_count_beginning_stocks",
    "country_count_production",
    "country_count_imports",
    "country_count_total_supply",
    "country_count_exports",
    "country_count_domestic_consumption",
    "country_count_ending_stocks",
    "country_count_total_distribution",
];

pub fn global_balance(c: &Commodity, format: Format, unit: UnitChoice) -> String {
    let (unit, factor) = unit.convert(&c.unit);
    match format {
        Format::Json => json(&Balance {
            commodity_code: &c.code,
            commodity: &c.name,
            country_code: None,
            country: None,
            unit: &unit,
            rows: c.world.iter().map(|r| world_row(r, factor)).collect(),
        }),
        Format::Csv => {
            let trailing: Vec<&str> = std::iter::once("country_count")
                .chain(COUNT_COLUMNS)
                .collect();
            let mut csv = Csv::new(&header(
                &[
                    "commodity_code",
                    "commodity",
                    "unit",
                    "market_year",
                    "marketing_year",
                ],
                &trailing,
            ));
            for r in &c.world {
                csv.text(&c.code);
                csv.text(&c.name);
                csv.text(&unit);
                csv.int(r.market_year);
                csv.text(&marketing_year(r.market_year));
                csv_measures(&mut csv, &scaled(&r.m, factor));
                csv.opt_int(r.country_count);
                for n in r.counts {
                    csv.opt_int(n);
                }
                csv.end_row();
            }
            csv.finish()
        }
    }
}

const COUNTRY_HEAD: [&str; 7] = [
    "commodity_code",
    "commodity",
    "country_code",
    "country",
    "unit",
    "market_year",
    "marketing_year",
];

/// The unit of a country's rows: its own, or the commodity's when it has none.
pub fn country_unit<'a>(c: &'a Commodity, k: &'a Country) -> &'a str {
    if k.unit.is_empty() { &c.unit } else { &k.unit }
}

/// One country's history, ascending market year; only `market_year` when given.
pub fn country_balance(
    c: &Commodity,
    k: &Country,
    market_year: Option<i32>,
    format: Format,
    unit: UnitChoice,
) -> String {
    let rows = k
        .rows
        .iter()
        .filter(|r| market_year.is_none_or(|y| r.market_year == y));
    let (unit, factor) = unit.convert(country_unit(c, k));
    match format {
        Format::Json => json(&Balance {
            commodity_code: &c.code,
            commodity: &c.name,
            country_code: Some(&k.code),
            country: Some(&k.name),
            unit: &unit,
            rows: rows
                .map(|r| BalanceRowOut {
                    country_code: None,
                    country: None,
                    market_year: r.market_year,
                    marketing_year: marketing_year(r.market_year),
                    m: MeasuresOut::new(&r.m, factor),
                })
                .collect(),
        }),
        Format::Csv => {
            let mut csv = Csv::new(&header(&COUNTRY_HEAD, &[]));
            for r in rows {
                for field in [&c.code, &c.name, &k.code, &k.name, &unit] {
                    csv.text(field);
                }
                csv.int(r.market_year);
                csv.text(&marketing_year(r.market_year));
                csv_measures(&mut csv, &scaled(&r.m, factor));
                csv.end_row();
            }
            csv.finish()
        }
    }
}

/// Every country's row of one market year, by production descending.
pub fn year_balance(c: &Commodity, market_year: i32, format: Format, unit: UnitChoice) -> String {
    let rows = c.year(market_year);
    let choice = unit;
    let (unit, factor) = choice.convert(&c.unit);
    match format {
        Format::Json => json(&Balance {
            commodity_code: &c.code,
            commodity: &c.name,
            country_code: None,
            country: None,
            unit: &unit,
            rows: rows
                .iter()
                .map(|(k, r)| BalanceRowOut {
                    country_code: Some(&k.code),
                    country: Some(&k.name),
                    market_year: r.market_year,
                    marketing_year: marketing_year(r.market_year),
                    m: MeasuresOut::new(&r.m, factor),
                })
                .collect(),
        }),
        Format::Csv => {
            let mut csv = Csv::new(&header(&COUNTRY_HEAD, &[]));
            for (k, r) in rows {
                let (unit, factor) = choice.convert(country_unit(c, k));
                for field in [&c.code, &c.name, &k.code, &k.name, &unit] {
                    csv.text(field);
                }
                csv.int(r.market_year);
                csv.text(&marketing_year(r.market_year));
                csv_measures(&mut csv, &scaled(&r.m, factor));
                csv.end_row();
            }
            csv.finish()
        }
    }
}

const REVISION_HEAD: [&str; 11] = [
    "commodity_code",
    "country_code",
    "country",
    "market_year",
    "marketing_year",
    "attribute_id",
    "attribute",
    "revised_in",
    "previous_value",
    "value",
    "change",
];

/// Revisions (newest first), at most `limit`.
pub fn revisions<'a>(
    data: &Data,
    picked: impl Iterator<Item = &'a Revision>,
    limit: usize,
    format: Format,
) -> String {
    let picked = picked.take(limit);
    match format {
        Format::Json => json(&Rows {
            rows: picked
                .map(|r| {
                    let place = &data.places[r.place as usize];
                    let attribute = &data.attributes[r.attribute as usize];
                    RevisionOut {
                        country_code: &place.code,
                        country: &place.name,
                        market_year: r.market_year,
                        marketing_year: marketing_year(r.market_year),
                        attribute_id: &attribute.id,
                        attribute: &attribute.name,
                        revised_in: &data.months[r.month as usize],
                        previous_value: value(r.previous_value),
                        value: value(r.value),
                        change: value(r.change),
                    }
                })
                .collect(),
        }),
        Format::Csv => {
            let mut csv = Csv::new(&REVISION_HEAD);
            for r in picked {
                let place = &data.places[r.place as usize];
                let attribute = &data.attributes[r.attribute as usize];
                csv.text(&data.commodities[r.commodity as usize].code);
                csv.text(&place.code);
                csv.text(&place.name);
                csv.int(r.market_year);
                csv.text(&marketing_year(r.market_year));
                csv.text(&attribute.id);
                csv.text(&attribute.name);
                csv.text(&data.months[r.month as usize]);
                csv.number(r.previous_value);
                csv.number(r.value);
                csv.number(r.change);
                csv.end_row();
            }
            csv.finish()
        }
    }
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    error: &'a str,
}

/// A JSON error body: `{"error": "..."}`.
pub fn error(message: &str) -> String {
    json(&ErrorOut { error: message })
}

#[derive(Serialize)]
struct HealthOk<'a> {
    status: &'static str,
    exported_at: &'a str,
    age_secs: u64,
    confirmed_at: Option<&'a str>,
    confirmed_age_secs: Option<u64>,
}

#[derive(Serialize)]
struct HealthProblem<'a> {
    status: &'a str,
    reason: &'a str,
}

/// `/healthz` when healthy: `{"status": "ok", "exported_at", "age_secs", "confirmed_at",
/// "confirmed_age_secs"}` (the last confirmation of upstream; null without a state DB).
pub fn health_ok(
    exported_at: &str,
    age_secs: u64,
    confirmed_at: Option<&str>,
    confirmed_age_secs: Option<u64>,
) -> String {
    json(&HealthOk {
        status: "ok",
        exported_at,
        age_secs,
        confirmed_at,
        confirmed_age_secs,
    })
}

/// `/healthz` otherwise: `{"status": "unavailable"|"stale", "reason"}`.
pub fn health_problem(status: &str, reason: &str) -> String {
    json(&HealthProblem { status, reason })
}
