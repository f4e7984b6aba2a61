//! What a release changed: the revisions of one release (`serving.estimate_revisions` rows
//! with that `revised_in`), grouped by market year and attribute, with the world total of the
//! changes and the countries that made them ranked by absolute change. Also the releases list
//! (`serving.value_history`) and the monthly prices (`serving.coffee_prices`) read as series.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::api::Format;
use crate::data::{Commodity, Data, Revision};
use crate::format::{Csv, marketing_year, value};

/// One (market year, attribute) of a release: its world total and its countries.
pub struct ChangeGroup<'a> {
    pub market_year: i32,
    pub attribute_id: &'a str,
    pub attribute: &'a str,
    /// Sum of the changes that have one (a value revised to or from NULL has none).
    pub total: f64,
    /// By absolute change, largest first (no change last), then country code.
    pub countries: Vec<&'a Revision>,
}

/// The newest release that revised commodity `c`.
pub fn latest_release<'a>(d: &'a Data, c: &Commodity) -> Option<&'a str> {
    c.revisions
        .first()
        .map(|&i| d.months[d.revisions[i as usize].month as usize].as_str())
}

/// Whether `release` is a release any revision names.
pub fn known_release(d: &Data, release: &str) -> bool {
    d.months.iter().any(|m| m == release)
}

/// The changes of `release` to commodity `c`, newest market year first, then attribute id.
pub fn changes<'a>(d: &'a Data, c: &Commodity, release: &str) -> Vec<ChangeGroup<'a>> {
    let mut groups: BTreeMap<(std::cmp::Reverse<i32>, &str), ChangeGroup<'a>> = BTreeMap::new();
    for &i in &c.revisions {
        let r = &d.revisions[i as usize];
        if d.months[r.month as usize] != release {
            continue;
        }
        let a = &d.attributes[r.attribute as usize];
        let g = groups
            .entry((std::cmp::Reverse(r.market_year), a.id.as_str()))
            .or_insert_with(|| ChangeGroup {
                market_year: r.market_year,
                attribute_id: &a.id,
                attribute: &a.name,
                total: 0.0,
                countries: Vec::new(),
            });
        if let Some(v) = value(r.change) {
            g.total += v;
        }
        g.countries.push(r);
    }
    let mut out: Vec<ChangeGroup<'a>> = groups.into_values().collect();
    for g in &mut out {
        g.countries.sort_by(|a, b| {
            let (x, y) = (value(a.change).map(f64::abs), value(b.change).map(f64::abs));
            y.partial_cmp(&x)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| {
                    d.places[a.place as usize]
                        .code
                        .cmp(&d.places[b.place as usize].code)
                })
        });
    }
    out
}

#[derive(Serialize)]
struct ReleasesOut<'a> {
    releases: Vec<ReleaseOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
}

#[derive(Serialize)]
struct ReleaseOut<'a> {
    release: &'a str,
    landing_sha256: &'a str,
}

pub const NO_HISTORY: &str =
    "the serving file has no serving.value_history table yet: no releases to list";

/// `GET /api/v1/releases`: oldest first.
pub fn releases_body(d: &Data, format: Format) -> String {
    let list = d.releases.as_deref().unwrap_or_default();
    match format {
        Format::Json => serde_json::to_string(&ReleasesOut {
            releases: list
                .iter()
                .map(|r| ReleaseOut {
                    release: &r.release,
                    landing_sha256: &r.landing_sha256,
                })
                .collect(),
            note: d.releases.is_none().then_some(NO_HISTORY),
        })
        .expect("releases serialize"),
        Format::Csv => {
            let mut csv = Csv::new(&["release", "landing_sha256"]);
            for r in list {
                csv.text(&r.release);
                csv.text(&r.landing_sha256);
                csv.end_row();
            }
            csv.finish()
        }
    }
}

#[derive(Serialize)]
struct ChangesOut<'a> {
    commodity_code: &'a str,
    commodity: &'a str,
    unit: &'a str,
    release: Option<&'a str>,
    changes: Vec<GroupOut<'a>>,
}

#[derive(Serialize)]
struct GroupOut<'a> {
    market_year: i32,
    marketing_year: String,
    attribute_id: &'a str,
    attribute: &'a str,
    change: f64,
    countries: Vec<CountryChangeOut<'a>>,
}

#[derive(Serialize)]
struct CountryChangeOut<'a> {
    country_code: &'a str,
    country: &'a str,
    previous_value: Option<f64>,
    value: Option<f64>,
    change: Option<f64>,
}

const CHANGE_HEAD: [&str; 11] = [
    "commodity_code",
    "release",
    "market_year",
    "marketing_year",
    "attribute_id",
    "attribute",
    "country_code",
    "country",
    "previous_value",
    "value",
    "change",
];

/// `GET /api/v1/release-changes`: `release` `None` when the commodity was never revised.
pub fn changes_body(d: &Data, c: &Commodity, release: Option<&str>, format: Format) -> String {
    let groups = release.map(|r| changes(d, c, r)).unwrap_or_default();
    match format {
        Format::Json => serde_json::to_string(&ChangesOut {
            commodity_code: &c.code,
            commodity: &c.name,
            unit: &c.unit,
            release,
            changes: groups
                .iter()
                .map(|g| GroupOut {
                    market_year: g.market_year,
                    marketing_year: marketing_year(g.market_year),
                    attribute_id: g.attribute_id,
                    attribute: g.attribute,
                    change: g.total,
                    countries: g
                        .countries
                        .iter()
                        .map(|r| {
                            let p = &d.places[r.place as usize];
                            CountryChangeOut {
                                country_code: &p.code,
                                country: &p.name,
                                previous_value: value(r.previous_value),
                                value: value(r.value),
                                change: value(r.change),
                            }
                        })
                        .collect(),
                })
                .collect(),
        })
        .expect("changes serialize"),
        Format::Csv => {
            let mut csv = Csv::new(&CHANGE_HEAD);
            for g in &groups {
                for r in &g.countries {
                    let p = &d.places[r.place as usize];
                    csv.text(&c.code);
                    csv.text(release.unwrap_or_default());
                    csv.int(g.market_year);
                    csv.text(&marketing_year(g.market_year));
                    csv.text(g.attribute_id);
                    csv.text(g.attribute);
                    csv.text(&p.code);
                    csv.text(&p.name);
                    csv.number(r.previous_value);
                    csv.number(r.value);
                    csv.number(r.change);
                    csv.end_row();
                }
            }
            csv.finish()
        }
    }
}

/// Average price of each series over each coffee year (October to September: the year that
/// begins in October of `Y` is marketing year `Y`), only years with all 12 months.
pub fn year_averages(prices: &[crate::data::Price]) -> BTreeMap<&str, BTreeMap<i32, f64>> {
    let mut sums: BTreeMap<&str, BTreeMap<i32, (f64, u32)>> = BTreeMap::new();
    for p in prices {
        let Some(v) = value(p.value) else { continue };
        let year = if p.month_of_year >= 10 {
            p.year
        } else {
            p.year - 1
        };
        let e = sums
            .entry(p.series.as_str())
            .or_default()
            .entry(year)
            .or_insert((0.0, 0));
        e.0 += v;
        e.1 += 1;
    }
    sums.into_iter()
        .map(|(s, years)| {
            let avgs = years
                .into_iter()
                .filter(|(_, (_, n))| *n == 12)
                .map(|(y, (sum, n))| (y, sum / f64::from(n)))
                .collect();
            (s, avgs)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Price;

    fn price(year: i32, month: u32, v: f64) -> Price {
        Price {
            month: format!("{year}-{month:02}"),
            year,
            month_of_year: month,
            series: "arabica".to_owned(),
            value: v,
            unit: "US cents per pound".to_owned(),
        }
    }

    #[test]
    fn coffee_year_averages_run_october_to_september_and_need_twelve_months() {
        let mut prices: Vec<Price> = (10..=12).map(|m| price(2022, m, 100.0)).collect();
        prices.extend((1..=9).map(|m| price(2023, m, 200.0)));
        prices.push(price(2023, 10, 999.0));
        let avgs = year_averages(&prices);
        let arabica = &avgs["arabica"];
        assert_eq!(arabica[&2022], (3.0 * 100.0 + 9.0 * 200.0) / 12.0);
        assert!(!arabica.contains_key(&2023), "one month is not a year");
    }
}
