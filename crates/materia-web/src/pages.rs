//! The HTML pages. Each is complete without JavaScript: the numbers are in tables, and the
//! charts (drawn by `assets/app.js` with ECharts from the JSON blocks beside them) add to them.
//! Every table cell with a value carries it exactly in `data-value`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use materia_status::StatusReport;

use serde::Serialize;

use crate::assets::Assets;
use crate::data::{
    Commodity, Country, CoverageBreak, DOMESTIC_CONSUMPTION, Data, ENDING_STOCKS, EXPORTS, IMPORTS,
    MEASURES, Measures, PRODUCTION, Revision, STOCKS_TO_USE, coverage_breaks,
};
use crate::format::{UnitChoice, grouped, marketing_year, percent, scaled, value};
use crate::html::{Nav, cell, esc, page, ratio_cell, script_json, url_part};
use crate::limits;

/// The coffee code the overview shows.
pub const COFFEE: &str = "0711100";

const BALANCE_COLUMNS: [(&str, usize); 8] = [
    ("Beginning stocks", 0),
    ("Production", 1),
    ("Imports", 2),
    ("Total supply", 3),
    ("Exports", 4),
    ("Domestic consumption", 5),
    ("Ending stocks", 6),
    ("Total distribution", 7),
];

/// The measures as the pages name them, in [`MEASURES`] order.
const MEASURE_NAMES: [&str; 8] = [
    "Beginning stocks",
    "Production",
    "Imports",
    "Total supply",
    "Exports",
    "Domestic consumption",
    "Ending stocks",
    "Total distribution",
];

/// A unit as PSD writes it, `(1000 60 KG BAGS)`, without its parentheses.
fn unit_label(unit: &str) -> &str {
    unit.strip_prefix('(')
        .and_then(|u| u.strip_suffix(')'))
        .unwrap_or(unit)
}

#[derive(Serialize)]
struct ChartOut<'a> {
    title: &'a str,
    unit: &'a str,
    percent: bool,
    years: &'a [i32],
    /// Marketing-year labels (`2023/24`), one per year.
    labels: Vec<String>,
    series: Vec<SeriesOut<'a>>,
    /// Vertical marks: coverage breaks, by marketing-year label.
    marks: &'a [MarkOut],
}

#[derive(Serialize)]
struct SeriesOut<'a> {
    name: &'a str,
    values: Vec<Option<f64>>,
}

#[derive(Serialize, Clone)]
struct MarkOut {
    label: String,
    text: String,
}

/// One chart: a figure with its data as JSON beside it.
fn chart(
    id: &str,
    title: &str,
    unit: &str,
    percent: bool,
    years: &[i32],
    series: &[(&str, Vec<f64>)],
    marks: &[MarkOut],
) -> String {
    let labels = years.iter().map(|y| marketing_year(*y)).collect();
    labelled_chart(id, title, unit, percent, (years, labels), series, marks)
}

/// A line chart over any labels (marketing years, months).
fn labelled_chart(
    id: &str,
    title: &str,
    unit: &str,
    percent: bool,
    (years, labels): (&[i32], Vec<String>),
    series: &[(&str, Vec<f64>)],
    marks: &[MarkOut],
) -> String {
    let json = serde_json::to_string(&ChartOut {
        title,
        unit,
        percent,
        years,
        labels,
        series: series
            .iter()
            .map(|(name, values)| SeriesOut {
                name,
                values: values.iter().map(|v| value(*v)).collect(),
            })
            .collect(),
        marks,
    })
    .expect("chart data serializes");
    format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption>\
         <div class=\"chart-box\" data-chart=\"{id}\" role=\"img\" aria-label=\"{}\"></div>\
         <script type=\"application/json\" id=\"{id}\">{}</script></figure>\n",
        esc(title),
        esc(&format!(
            "{title}, by marketing year; the numbers are in the table below"
        )),
        script_json(&json)
    )
}

/// A scatter point: stocks-to-use, price, marketing-year label.
type Point = (f64, f64, String);

#[derive(Serialize)]
struct ScatterOut<'a> {
    kind: &'static str,
    title: &'a str,
    x_name: &'a str,
    y_name: &'a str,
    /// Per series: `[stocks_to_use, price, "2023/24"]` points.
    series: Vec<(String, Vec<Point>)>,
    /// The label of the latest marketing year, marked on the chart.
    latest: Option<String>,
}

/// A price series' name for readers: the FRED ids of the IMF coffee prices the price extractor
/// lands by default, else the id itself.
fn series_label(series: &str) -> &str {
    match series {
        "PCOFFOTMUSDM" => "Arabica (other milds)",
        "PCOFFROBUSDM" => "Robusta",
        other => other,
    }
}

/// The coffee page's prices: the monthly series, and each marketing year's average price
/// against world stocks-to-use. Hidden, with a note, when the serving file has no prices.
fn prices_section(data: &Data, c: &Commodity) -> String {
    let prices = data.prices.as_deref().unwrap_or_default();
    if prices.is_empty() {
        return "<section id=\"prices\"><h2>Prices</h2><p class=\"note\" id=\"no-prices\">No prices in \
                the serving file yet (<code>serving.coffee_prices</code>): the price chart and the \
                price against stocks-to-use scatter are hidden.</p></section>\n"
            .to_owned();
    }
    let mut months: Vec<&str> = prices.iter().map(|p| p.month.as_str()).collect();
    months.sort_unstable();
    months.dedup();
    let mut names: Vec<&str> = prices.iter().map(|p| p.series.as_str()).collect();
    names.dedup();
    let series: Vec<(&str, Vec<f64>)> = names
        .iter()
        .map(|n| {
            let values = months
                .iter()
                .map(|m| {
                    prices
                        .iter()
                        .find(|p| p.series == *n && p.month == *m)
                        .map_or(f64::NAN, |p| p.value)
                })
                .collect();
            (series_label(n), values)
        })
        .collect();
    let unit = prices.first().map_or("", |p| p.unit.as_str());
    let mut out = String::from("<section id=\"prices\" class=\"charts\">\n");
    out.push_str(&labelled_chart(
        "chart-prices",
        &format!("Monthly prices, {unit}"),
        unit,
        false,
        (&[], months.iter().map(|m| (*m).to_owned()).collect()),
        &series,
        &[],
    ));
    let averages = crate::releases::year_averages(prices);
    let scatter = ScatterOut {
        kind: "scatter",
        title: "Marketing-year average price against world stocks-to-use",
        x_name: "World stocks-to-use",
        y_name: unit,
        series: averages
            .iter()
            .map(|(name, years)| {
                let points = c
                    .world
                    .iter()
                    .filter_map(|w| {
                        let s = value(w.m[STOCKS_TO_USE])?;
                        Some((
                            s,
                            *years.get(&w.market_year)?,
                            marketing_year(w.market_year),
                        ))
                    })
                    .collect();
                (series_label(name).to_owned(), points)
            })
            .collect(),
        latest: averages
            .values()
            .filter_map(|y| y.keys().next_back())
            .max()
            .filter(|y| c.world.iter().any(|w| w.market_year == **y))
            .map(|y| marketing_year(*y)),
    };
    let json = serde_json::to_string(&scatter).expect("scatter serializes");
    let _ = writeln!(
        out,
        "<figure class=\"chart\"><figcaption>{0}</figcaption>\
         <div class=\"chart-box\" data-chart=\"chart-price-stocks\" role=\"img\" aria-label=\"{0}: \
         one point per marketing year (October to September averages), the latest marked\"></div>\
         <script type=\"application/json\" id=\"chart-price-stocks\">{1}</script></figure>",
        esc(scatter.title),
        script_json(&json)
    );
    out.push_str(
        "<p class=\"note\">Prices are IMF monthly averages (arabica: other milds; robusta), \
         in US cents per pound. A marketing year's average runs from October to September, \
         the coffee year; years with fewer than 12 months are left out.</p>\n</section>\n",
    );
    out
}

/// The front page's lead: what the newest release changed, at world level per market year
/// and attribute, and the countries that moved each total, largest change first.
fn release_panel(data: &Data, c: &Commodity) -> String {
    let Some(release) = crate::releases::latest_release(data, c) else {
        return "<section id=\"release-changes\"><h2>What changed this release</h2><p class=\"note\">\
                No release has revised a value of this commodity yet.</p></section>\n"
            .to_owned();
    };
    let code = url_part(&c.code);
    let mut groups = crate::releases::changes(data, c, release);
    groups.sort_by(|a, b| {
        b.market_year
            .cmp(&a.market_year)
            .then_with(|| b.total.abs().total_cmp(&a.total.abs()))
    });
    let mut out = format!(
        "<section id=\"release-changes\" data-release=\"{0}\"><h2>What changed in the {0} release</h2>\
         <p class=\"lede\">World totals of the revisions, per marketing year and attribute, and the \
         countries that made them. <a href=\"/api/v1/release-changes?commodity={code}&amp;release={0}\">JSON</a></p>{1}\
         <div class=\"scroll\"><table class=\"data\" id=\"changes\"><thead><tr><th scope=\"col\">Marketing year</th>\
         <th scope=\"col\">Attribute</th><th scope=\"col\">World change</th><th scope=\"col\">By country</th></tr></thead><tbody>",
        esc(release),
        csv_link(&format!(
            "/api/v1/release-changes?commodity={code}&release={}&format=csv",
            url_part(release)
        ))
    );
    for g in groups.iter().take(limits::PAGE_CHANGE_GROUPS) {
        let by: Vec<String> = g
            .countries
            .iter()
            .take(limits::PAGE_CHANGE_COUNTRIES)
            .map(|r| {
                let p = &data.places[r.place as usize];
                let change = value(r.change).map_or_else(
                    || "revised".to_owned(),
                    |v| format!("{}{}", if v > 0.0 { "+" } else { "" }, grouped(Some(v))),
                );
                format!("{} {}", esc(&p.name), esc(&change))
            })
            .collect();
        let more = g
            .countries
            .len()
            .saturating_sub(limits::PAGE_CHANGE_COUNTRIES);
        let _ = write!(
            out,
            "<tr data-market-year=\"{}\" data-attribute=\"{}\"><th scope=\"row\">{}</th><td>{}</td>{}<td>{}{}</td></tr>",
            g.market_year,
            esc(g.attribute_id),
            marketing_year(g.market_year),
            esc(g.attribute),
            cell(g.total),
            by.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    if groups.is_empty() {
        out.push_str("<tr><td colspan=\"4\" class=\"empty\">No changes.</td></tr>");
    }
    out.push_str("</tbody></table></div></section>\n");
    out
}

/// The chart series: production, domestic consumption, exports, ending stocks (and imports on
/// a country's page), then stocks-to-use with its definition.
fn balance_charts(
    unit: &str,
    rows: &[(i32, Measures)],
    with_imports: bool,
    marks: &[MarkOut],
    world: bool,
) -> String {
    let years: Vec<i32> = rows.iter().map(|(y, _)| *y).collect();
    let series_of = |k: usize| rows.iter().map(|(_, m)| m[k]).collect::<Vec<f64>>();
    let mut series = vec![
        ("Production", series_of(PRODUCTION)),
        ("Domestic consumption", series_of(DOMESTIC_CONSUMPTION)),
        ("Exports", series_of(EXPORTS)),
        ("Ending stocks", series_of(ENDING_STOCKS)),
    ];
    if with_imports {
        series.push(("Imports", series_of(IMPORTS)));
    }
    let mut out = String::from("<section class=\"charts\">\n");
    out.push_str(&chart(
        "chart-balance",
        &format!("Balance, {}", unit_label(unit)),
        unit,
        false,
        &years,
        &series,
        marks,
    ));
    out.push_str(&chart(
        "chart-stocks-to-use",
        "Stocks-to-use",
        "",
        true,
        &years,
        &[("Stocks-to-use", series_of(STOCKS_TO_USE))],
        marks,
    ));
    out.push_str(if world {
        "<p class=\"note\" id=\"stocks-to-use-definition\">World stocks-to-use is ending stocks \
         divided by domestic consumption: at world level exports and imports cancel. A country's \
         stocks-to-use is ending stocks divided by domestic consumption plus exports.</p>\n"
    } else {
        "<p class=\"note\" id=\"stocks-to-use-definition\">A country's stocks-to-use is ending \
         stocks divided by domestic consumption plus exports (the world figure divides by \
         domestic consumption alone).</p>\n"
    });
    out.push_str("</section>\n");
    out
}

/// The balance by market year, newest first; `breaks` marks the years where coverage changed.
fn balance_table(
    caption: &str,
    rows: &[(i32, Measures, Option<i64>)],
    with_count: bool,
    breaks: &[CoverageBreak],
    csv: &str,
) -> String {
    let mut out = format!(
        "<section><h2>{}</h2>{}<div class=\"scroll\"><table class=\"data\" id=\"balance\">\
         <thead><tr><th scope=\"col\">Marketing year</th>",
        esc(caption),
        csv_link(csv)
    );
    for (name, _) in BALANCE_COLUMNS {
        let _ = write!(out, "<th scope=\"col\">{name}</th>");
    }
    out.push_str("<th scope=\"col\">Stocks-to-use</th>");
    if with_count {
        out.push_str("<th scope=\"col\">Countries</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for (year, m, count) in rows.iter().rev() {
        let here: Vec<&CoverageBreak> = breaks.iter().filter(|b| b.market_year == *year).collect();
        if here.is_empty() {
            let _ = write!(
                out,
                "<tr data-market-year=\"{year}\"><th scope=\"row\">{}</th>",
                marketing_year(*year)
            );
        } else {
            let why: Vec<String> = here.iter().map(|b| break_text(b)).collect();
            let _ = write!(
                out,
                "<tr data-market-year=\"{year}\" class=\"coverage-break\"><th scope=\"row\">{} \
                 <span class=\"mark\" title=\"{}\">coverage changes</span></th>",
                marketing_year(*year),
                esc(&why.join("; "))
            );
        }
        for (_, k) in BALANCE_COLUMNS {
            out.push_str(&cell(m[k]));
        }
        out.push_str(&ratio_cell(m[STOCKS_TO_USE]));
        if with_count {
            match count {
                Some(n) => {
                    let _ = write!(out, "<td class=\"num\" data-value=\"{n}\">{n}</td>");
                }
                None => out.push_str("<td class=\"num null\" data-value=\"\">–</td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div></section>\n");
    out
}

fn break_text(b: &CoverageBreak) -> String {
    format!(
        "{}: {} countries, {} the year before",
        MEASURE_NAMES[b.measure], b.to, b.from
    )
}

/// The coverage breaks as a table of their own; its CSV is the world balance's, which carries
/// the per-measure counts.
fn coverage_table(breaks: &[CoverageBreak], csv: &str) -> String {
    if breaks.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "<section><h2>Coverage changes</h2><p class=\"lede\">World rows are sums over the \
         countries that report a measure. In these marketing years the number of reporting \
         countries changed by more than 10 %: the world figure moves with the coverage, not \
         only with the market.</p>{}<div class=\"scroll\"><table class=\"data\" id=\"coverage\">\
         <thead><tr><th scope=\"col\">Marketing year</th><th scope=\"col\">Measure</th>\
         <th scope=\"col\">Countries before</th><th scope=\"col\">Countries</th></tr></thead><tbody>",
        csv_link(csv)
    );
    for b in breaks {
        let _ = write!(
            out,
            "<tr data-market-year=\"{}\" data-measure=\"{}\"><th scope=\"row\">{}</th><td>{}</td>\
             <td class=\"num\" data-value=\"{}\">{}</td><td class=\"num\" data-value=\"{}\">{}</td></tr>",
            b.market_year,
            MEASURES[b.measure],
            marketing_year(b.market_year),
            MEASURE_NAMES[b.measure],
            b.from,
            b.from,
            b.to,
            b.to
        );
    }
    out.push_str("</tbody></table></div></section>\n");
    out
}

/// The chart marks of coverage breaks, one per marketing year.
fn break_marks(breaks: &[CoverageBreak]) -> Vec<MarkOut> {
    let mut marks: Vec<MarkOut> = Vec::new();
    for b in breaks {
        let label = marketing_year(b.market_year);
        match marks.iter_mut().find(|m| m.label == label) {
            Some(m) => {
                let _ = write!(m.text, "; {}", break_text(b));
            }
            None => marks.push(MarkOut {
                label,
                text: format!("Coverage: {}", break_text(b)),
            }),
        }
    }
    marks
}

/// A link to the CSV of the same data.
fn csv_link(href: &str) -> String {
    format!(
        "<p class=\"downloads\"><a class=\"csv\" href=\"{}\">CSV</a></p>",
        esc(href)
    )
}

/// The unit switch: the page in PSD's unit, and in metric tons when its unit is bags.
fn unit_switch(base: &str, unit: &str, choice: UnitChoice) -> String {
    let (mt, _) = UnitChoice::Mt.convert(unit);
    if mt == unit {
        return String::new();
    }
    let item = |c: UnitChoice, label: &str, href: String| {
        let current = if c == choice {
            " aria-current=\"true\""
        } else {
            ""
        };
        format!("<a href=\"{}\"{current}>{}</a>", esc(&href), esc(label))
    };
    format!(
        "<p class=\"unit-switch\" id=\"unit-switch\">Unit: {} · {}</p>\n",
        item(UnitChoice::Native, unit_label(unit), base.to_owned()),
        item(UnitChoice::Mt, unit_label(&mt), format!("{base}?unit=mt"))
    )
}

/// What a marketing year is, for the commodity of the page.
fn marketing_year_note(c: &Commodity) -> String {
    let specific = if c.code == COFFEE {
        " For coffee each country's marketing year begins with its harvest: in October for most \
         producers, in July for Brazil, in April for Indonesia. A world row sums the years that \
         begin in the same calendar year."
    } else {
        " Marketing years begin in different months in different countries; a world row sums \
         the years that begin in the same calendar year."
    };
    format!(
        "<p class=\"note\" id=\"marketing-year-note\">Years are USDA marketing years, labelled by \
         the calendar years they span: 2023/24 begins in 2023.{specific}</p>\n"
    )
}

fn commodity_picker(data: &Data, selected: &str) -> String {
    let mut out = String::from(
        "<form class=\"picker\" action=\"/commodity\" method=\"get\">\
         <label for=\"pick-commodity\">Commodity</label>\
         <select id=\"pick-commodity\" name=\"code\" data-navigate=\"/commodity/\">",
    );
    let mut sorted: Vec<&Commodity> = data.commodities.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.code.cmp(&b.code)));
    for c in sorted {
        let sel = if c.code == selected { " selected" } else { "" };
        let _ = write!(
            out,
            "<option value=\"{}\"{sel}>{} ({})</option>",
            esc(&c.code),
            esc(&c.name),
            esc(&c.code)
        );
    }
    out.push_str("</select><button type=\"submit\">Show</button></form>\n");
    out
}

fn country_picker(c: &Commodity, selected: Option<&str>) -> String {
    let mut out = format!(
        "<form class=\"picker\" action=\"/commodity/{}/country\" method=\"get\">\
         <label for=\"pick-country\">Country</label>\
         <select id=\"pick-country\" name=\"cc\" data-navigate=\"/commodity/{}/country/\">",
        url_part(&c.code),
        url_part(&c.code)
    );
    let mut sorted: Vec<&Country> = c.countries.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.code.cmp(&b.code)));
    if selected.is_none() {
        out.push_str("<option value=\"\" selected disabled>Choose a country</option>");
    }
    for k in sorted {
        let sel = if Some(k.code.as_str()) == selected {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<option value=\"{}\"{sel}>{} ({})</option>",
            esc(&k.code),
            esc(&k.name),
            esc(&k.code)
        );
    }
    out.push_str("</select><button type=\"submit\">Show</button></form>\n");
    out
}

fn country_link(c: &Commodity, code: &str, name: &str) -> String {
    format!(
        "<a href=\"/commodity/{}/country/{}\">{}</a>",
        url_part(&c.code),
        url_part(code),
        esc(name)
    )
}

/// Top countries of the latest market year by one measure, with their share of the world.
fn top_table(
    c: &Commodity,
    (id, title, column): (&str, &str, &str),
    measure: usize,
    factor: f64,
    csv: &str,
) -> String {
    let mut rows = c.year(c.last_year);
    rows.retain(|(_, r)| value(r.m[measure]).is_some_and(|v| v > 0.0));
    rows.sort_by(|(a, ra), (b, rb)| {
        rb.m[measure]
            .total_cmp(&ra.m[measure])
            .then_with(|| a.code.cmp(&b.code))
    });
    let world = c
        .world
        .last()
        .and_then(|w| value(w.m[measure]))
        .filter(|w| *w > 0.0);
    let mut out = format!(
        "<div class=\"card\"><h2>{} {}</h2>{}<div class=\"scroll\"><table class=\"data\" id=\"{id}\">\
         <thead><tr><th scope=\"col\">Country</th><th scope=\"col\">{}</th><th scope=\"col\">Share</th></tr></thead><tbody>",
        esc(title),
        marketing_year(c.last_year),
        csv_link(csv),
        esc(column)
    );
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"3\">None recorded.</td></tr>");
    }
    for (k, r) in rows.iter().take(limits::PAGE_TOP_COUNTRIES) {
        let _ = write!(
            out,
            "<tr data-country=\"{}\"><td>{}</td>{}<td class=\"num\">{}</td></tr>",
            esc(&k.code),
            country_link(c, &k.code, &k.name),
            cell(r.m[measure] * factor),
            percent(world.and_then(|w| value(r.m[measure]).map(|v| v / w)))
        );
    }
    out.push_str("</tbody></table></div></div>\n");
    out
}

fn revisions_table<'a>(
    data: &Data,
    rows: impl Iterator<Item = &'a Revision>,
    with_commodity: bool,
) -> String {
    let mut out = String::from(
        "<div class=\"scroll\"><table class=\"data\" id=\"revisions\"><thead><tr>\
         <th scope=\"col\">Revised in</th>",
    );
    if with_commodity {
        out.push_str("<th scope=\"col\">Commodity</th>");
    }
    out.push_str(
        "<th scope=\"col\">Country</th><th scope=\"col\">Marketing year</th>\
         <th scope=\"col\">Attribute</th><th scope=\"col\">Previous</th>\
         <th scope=\"col\">Value</th><th scope=\"col\">Change</th></tr></thead><tbody>",
    );
    let mut any = false;
    for r in rows {
        any = true;
        let c = &data.commodities[r.commodity as usize];
        let place = &data.places[r.place as usize];
        let attribute = &data.attributes[r.attribute as usize];
        let _ = write!(
            out,
            "<tr data-country=\"{}\" data-attribute=\"{}\"><td>{}</td>",
            esc(&place.code),
            esc(&attribute.id),
            esc(&data.months[r.month as usize])
        );
        if with_commodity {
            let _ = write!(
                out,
                "<td><a href=\"/commodity/{}\">{}</a></td>",
                url_part(&c.code),
                esc(&c.name)
            );
        }
        let _ = write!(
            out,
            "<td>{}</td><td class=\"num\" data-value=\"{}\">{}</td><td>{}</td>{}{}{}</tr>",
            country_link(c, &place.code, &place.name),
            r.market_year,
            marketing_year(r.market_year),
            esc(&attribute.name),
            cell(r.previous_value),
            cell(r.value),
            cell(r.change)
        );
    }
    if !any {
        let span = if with_commodity { 8 } else { 7 };
        let _ = write!(
            out,
            "<tr><td colspan=\"{span}\" class=\"empty\">No revisions recorded.</td></tr>"
        );
    }
    out.push_str("</tbody></table></div>\n");
    out
}

/// `/` (the coffee overview) and `/commodity/CODE`, in `choice`'s unit.
pub fn commodity(
    assets: &Assets,
    data: &Data,
    c: &Commodity,
    overview: bool,
    choice: UnitChoice,
) -> String {
    let (unit, factor) = choice.convert(&c.unit);
    let code = url_part(&c.code);
    let unit_query = match choice {
        UnitChoice::Native => String::new(),
        UnitChoice::Mt => "&unit=mt".to_owned(),
    };
    let latest_count = c.world.last().and_then(|w| w.country_count);
    let mut body = format!(
        "<section class=\"head\"><div><h1>{}{}</h1><p class=\"lede\">{} · marketing years {}–{}{}</p></div>{}</section>\n",
        esc(&c.name),
        if overview { ": world balance" } else { "" },
        esc(unit_label(&unit)),
        marketing_year(c.first_year),
        marketing_year(c.last_year),
        latest_count.map_or_else(String::new, |n| format!(
            " · {n} countries in {}",
            marketing_year(c.last_year)
        )),
        commodity_picker(data, &c.code)
    );
    let base = if overview {
        "/".to_owned()
    } else {
        format!("/commodity/{code}")
    };
    body.push_str(&release_panel(data, c));
    body.push_str(&unit_switch(&base, &c.unit, choice));
    body.push_str(&marketing_year_note(c));
    let breaks = coverage_breaks(&c.world);
    let marks = break_marks(&breaks);
    let rows: Vec<(i32, Measures)> = c
        .world
        .iter()
        .map(|w| (w.market_year, scaled(&w.m, factor)))
        .collect();
    body.push_str(&balance_charts(&unit, &rows, false, &marks, true));
    if c.code == COFFEE {
        body.push_str(&prices_section(data, c));
    }
    body.push_str("<section class=\"tables\">\n");
    let year_csv = format!(
        "/api/v1/commodity-balance?commodity={code}&market_year={}&format=csv{unit_query}",
        c.last_year
    );
    let top = [
        (("top-producers", "Top producers", "Production"), PRODUCTION),
        (("top-exporters", "Top exporters", "Exports"), EXPORTS),
    ];
    for (names, measure) in top {
        body.push_str(&top_table(c, names, measure, factor, &year_csv));
    }
    body.push_str("</section>\n");
    let _ = writeln!(
        body,
        "<section><h2>Latest revisions</h2>{}{}<p><a href=\"/revisions?commodity={code}\">All revisions of {}</a></p></section>",
        csv_link(&format!(
            "/api/v1/revisions?commodity={code}&limit={}&format=csv",
            limits::PAGE_REVISIONS
        )),
        revisions_table(
            data,
            c.revisions
                .iter()
                .take(limits::PAGE_REVISIONS)
                .map(|&i| &data.revisions[i as usize]),
            false
        ),
        esc(&c.name)
    );
    let table_rows: Vec<(i32, Measures, Option<i64>)> = c
        .world
        .iter()
        .zip(rows)
        .map(|(w, (y, m))| (y, m, w.country_count))
        .collect();
    body.push_str(&balance_table(
        &format!("World balance by marketing year, {}", unit_label(&unit)),
        &table_rows,
        true,
        &breaks,
        &format!("/api/v1/global-balance?commodity={code}&format=csv{unit_query}"),
    ));
    body.push_str(&coverage_table(
        &breaks,
        &format!("/api/v1/global-balance?commodity={code}&format=csv"),
    ));
    let _ = writeln!(
        body,
        "<section><h2>Countries</h2>{}</section>",
        country_picker(c, None)
    );
    let title = if overview {
        format!("{} world balance", c.name)
    } else {
        c.name.clone()
    };
    let nav = if overview {
        Nav::Overview
    } else {
        Nav::Commodity
    };
    page(assets, &title, nav, Some(&data.exported_at_iso), &body)
}

/// `/` when the serving file holds no coffee.
pub fn no_coffee(assets: &Assets, data: &Data) -> String {
    let body = format!(
        "<section class=\"head\"><div><h1>No coffee in the serving file</h1>\
         <p class=\"lede\">The serving file holds no commodity {COFFEE} (Coffee, Green). Pick another one.</p></div>{}</section>\n",
        commodity_picker(data, "")
    );
    page(
        assets,
        "Overview",
        Nav::Overview,
        Some(&data.exported_at_iso),
        &body,
    )
}

/// `/commodity/CODE/country/CC`, in `choice`'s unit.
pub fn country(
    assets: &Assets,
    data: &Data,
    c: &Commodity,
    k: &Country,
    choice: UnitChoice,
) -> String {
    let (unit, factor) = choice.convert(crate::api::country_unit(c, k));
    let (code, cc) = (url_part(&c.code), url_part(&k.code));
    let unit_query = match choice {
        UnitChoice::Native => "",
        UnitChoice::Mt => "&unit=mt",
    };
    let mut body = format!(
        "<section class=\"head\"><div><h1>{}: {}</h1><p class=\"lede\">{} · {} · <a href=\"/commodity/{code}\">world balance</a></p></div>{}</section>\n",
        esc(&k.name),
        esc(&c.name),
        esc(&k.code),
        esc(unit_label(&unit)),
        country_picker(c, Some(&k.code))
    );
    body.push_str(&unit_switch(
        &format!("/commodity/{code}/country/{cc}"),
        crate::api::country_unit(c, k),
        choice,
    ));
    body.push_str(&marketing_year_note(c));
    if k.rows.is_empty() {
        body.push_str("<p class=\"empty\">No balance rows for this country.</p>\n");
    } else {
        let rows: Vec<(i32, Measures)> = k
            .rows
            .iter()
            .map(|r| (r.market_year, scaled(&r.m, factor)))
            .collect();
        body.push_str(&balance_charts(&unit, &rows, true, &[], false));
        let table_rows: Vec<(i32, Measures, Option<i64>)> =
            rows.into_iter().map(|(y, m)| (y, m, None)).collect();
        body.push_str(&balance_table(
            &format!("Balance by marketing year, {}", unit_label(&unit)),
            &table_rows,
            false,
            &[],
            &format!(
                "/api/v1/commodity-balance?commodity={code}&country={cc}&format=csv{unit_query}"
            ),
        ));
    }
    let _ = writeln!(
        body,
        "<section><h2>Revisions</h2>{}{}<p><a href=\"/revisions?commodity={code}&amp;country={cc}\">All revisions</a></p></section>",
        csv_link(&format!(
            "/api/v1/revisions?commodity={code}&country={cc}&limit={}&format=csv",
            limits::PAGE_REVISIONS
        )),
        revisions_table(
            data,
            k.revisions
                .iter()
                .take(limits::PAGE_REVISIONS)
                .map(|&i| &data.revisions[i as usize]),
            false
        ),
    );
    page(
        assets,
        &format!("{}: {}", k.name, c.name),
        Nav::Commodity,
        Some(&data.exported_at_iso),
        &body,
    )
}

/// `/revisions`, filtered by commodity and country.
pub fn revisions<'a>(
    assets: &Assets,
    data: &Data,
    commodity: Option<&Commodity>,
    country: Option<&str>,
    limit: usize,
    rows: impl Iterator<Item = &'a Revision>,
) -> String {
    let mut body = String::from(
        "<section class=\"head\"><div><h1>Revisions</h1><p class=\"lede\">Each change of a value \
         between two monthly USDA releases, newest first.</p></div>",
    );
    body.push_str(
        "<form class=\"picker filters\" action=\"/revisions\" method=\"get\">\
         <label for=\"filter-commodity\">Commodity</label><select id=\"filter-commodity\" name=\"commodity\">\
         <option value=\"\">All commodities</option>",
    );
    let mut sorted: Vec<&Commodity> = data.commodities.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.code.cmp(&b.code)));
    for c in sorted {
        let sel = if commodity.is_some_and(|x| x.code == c.code) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            body,
            "<option value=\"{}\"{sel}>{}</option>",
            esc(&c.code),
            esc(&c.name)
        );
    }
    body.push_str(
        "</select><label for=\"filter-country\">Country</label><select id=\"filter-country\" name=\"country\">\
         <option value=\"\">All countries</option>",
    );
    let countries: Vec<(&str, &str)> = match commodity {
        Some(c) => c
            .countries
            .iter()
            .map(|k| (k.code.as_str(), k.name.as_str()))
            .collect(),
        None => data
            .countries
            .iter()
            .map(|(c, n)| (c.as_str(), n.as_str()))
            .collect(),
    };
    let mut countries = countries;
    countries.sort_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)));
    for (code, name) in countries {
        let sel = if country == Some(code) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            body,
            "<option value=\"{}\"{sel}>{} ({})</option>",
            esc(code),
            esc(name),
            esc(code)
        );
    }
    let _ = writeln!(
        body,
        "</select><input type=\"hidden\" name=\"limit\" value=\"{limit}\"><button type=\"submit\">Filter</button></form></section>"
    );
    let _ = writeln!(
        body,
        "<section><p class=\"lede\">The newest {limit} at most. As JSON: <a href=\"/api/v1/revisions?{0}\">/api/v1/revisions</a>.</p>\
         <p class=\"downloads\"><a class=\"csv\" href=\"/api/v1/revisions?{0}&amp;format=csv\">CSV</a></p>{1}</section>",
        esc(&match (commodity, country) {
            (Some(c), Some(k)) => format!(
                "commodity={}&country={}&limit={limit}",
                url_part(&c.code),
                url_part(k)
            ),
            (Some(c), None) => format!("commodity={}&limit={limit}", url_part(&c.code)),
            _ => format!("commodity={COFFEE}&limit={limit}"),
        }),
        revisions_table(data, rows.take(limit), true)
    );
    page(
        assets,
        "Revisions",
        Nav::Revisions,
        Some(&data.exported_at_iso),
        &body,
    )
}

/// What `/status` knows about the serving file.
pub struct ServingView<'a> {
    pub generation: Option<&'a crate::app::Generation>,
    pub health: crate::app::Health,
    /// The file name in `.previous/` of the generation in use, when the serving file could not
    /// be read.
    pub fallback: Option<String>,
}

/// A short class of a step's error, for the public page: the text itself (paths, stderr of
/// git, sops or the build) stays in `materia-status` and the journal.
pub fn error_class(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| e.contains(w));
    if has(&["timed out", "timeout", "time-out", "longer than"]) {
        "timeout"
    } else if has(&["lock"]) {
        "lock held"
    } else if has(&[
        "http", "download", "connect", "dns", "tls", "network", "upstream",
    ]) {
        "upstream"
    } else if has(&["permission", "denied", "read-only", "no space", "disk"]) {
        "storage"
    } else if has(&[
        "sqlmesh",
        "sql",
        "duckdb",
        "transform",
        "schema",
        "column",
        "table",
    ]) {
        "data"
    } else if has(&["sops", "age", "secret", "key"]) {
        "secrets"
    } else {
        "failed"
    }
}

/// `/status`: the steps, their state and age, and the serving file's age and tables. It is
/// public: no file system path and no error text, only a short error class.
pub fn status(
    assets: &Assets,
    report: &Result<StatusReport, String>,
    serving: &ServingView<'_>,
) -> String {
    let mut body = String::from(
        "<section class=\"head\"><div><h1>Status</h1><p class=\"lede\">The pipeline's steps and \
         the serving file this server reads. Operators find the detail in <code>materia-status</code> \
         and the journal.</p></div></section>\n",
    );
    body.push_str("<section><h2>Serving file</h2><div class=\"scroll\"><table class=\"data\" id=\"serving\"><tbody>");
    let (health, health_class) = match &serving.health {
        crate::app::Health::Ok { .. } => ("ok", "ok"),
        crate::app::Health::Stale(_) => ("stale", "bad"),
        crate::app::Health::Unavailable(_) => ("unavailable", "bad"),
    };
    let _ = write!(
        body,
        "<tr><th scope=\"row\">Health</th><td class=\"{health_class}\" id=\"health\">{health}</td></tr>"
    );
    if let Some(name) = &serving.fallback {
        let _ = write!(
            body,
            "<tr><th scope=\"row\">Serving</th><td class=\"bad\" id=\"fallback\">the previous generation \
             <code>{}</code>: the serving file cannot be read</td></tr>",
            esc(name)
        );
    }
    if let Some(g) = serving.generation {
        let age = SystemTime::now()
            .duration_since(g.data.exported_at)
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><th scope=\"row\">Exported at</th><td id=\"exported-at\">{}</td></tr>\
             <tr><th scope=\"row\">Age</th><td id=\"age\" data-value=\"{}\">{}</td></tr>\
             <tr><th scope=\"row\">Read by this server at</th><td>{}</td></tr>",
            esc(&g.data.exported_at_iso),
            age.as_secs(),
            esc(&materia_status::short(Duration::from_secs(age.as_secs()))),
            esc(&humantime::format_rfc3339_millis(g.read_at).to_string()),
        );
        for t in &g.generation.tables {
            let _ = write!(
                body,
                "<tr><th scope=\"row\">Table <code>{0}</code></th><td class=\"num\" data-value=\"{1}\">{2}</td></tr>",
                esc(&t.table_name),
                t.row_count,
                grouped(Some(t.row_count as f64))
            );
        }
    }
    body.push_str("</tbody></table></div></section>\n");
    body.push_str("<section><h2>Pipeline</h2>");
    match report {
        Err(e) => {
            let class = if e.contains("no state DB") {
                "no state DB to read"
            } else {
                "the state DB cannot be read"
            };
            let _ = write!(body, "<p class=\"bad\" id=\"state-db-error\">{class}</p>");
        }
        Ok(report) => body.push_str(&steps_table(report)),
    }
    body.push_str("</section>\n");
    let exported = serving.generation.map(|g| g.data.exported_at_iso.as_str());
    page(assets, "Status", Nav::Status, exported, &body)
}

fn steps_table(report: &StatusReport) -> String {
    let mut body = String::from(
        "<div class=\"scroll\"><table class=\"data\" id=\"steps\"><thead><tr><th scope=\"col\">Step</th>\
         <th scope=\"col\">Status</th><th scope=\"col\">Last run</th><th scope=\"col\">Duration</th>\
         <th scope=\"col\">Last success</th><th scope=\"col\">Age</th><th scope=\"col\">Error class</th></tr></thead><tbody>",
    );
    for s in &report.steps {
        let class = match s.status_str() {
            "failed" => " class=\"bad\"",
            "success" | "unchanged" => " class=\"ok\"",
            _ => "",
        };
        let error = match (&s.error, s.status_str()) {
            (Some(e), "failed") => error_class(e),
            _ => "",
        };
        let _ = write!(
            body,
            "<tr data-step=\"{}\"><th scope=\"row\">{}</th><td{class}>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"error-class\">{error}</td></tr>",
            esc(&s.step),
            esc(&s.step),
            esc(s.status_str()),
            esc(s.last_run.as_deref().unwrap_or("–")),
            s.duration_secs
                .map_or_else(|| "–".to_owned(), |d| format!("{d:.1}s")),
            esc(s.last_success.as_deref().unwrap_or("–")),
            s.age_secs.map_or_else(
                || "–".to_owned(),
                |a| materia_status::short(Duration::from_secs(a))
            ),
        );
    }
    body.push_str("</tbody></table></div>");
    if !report.quarantined.is_empty() {
        body.push_str(
            "<h3>Quarantined landing files</h3><p class=\"lede\">Skipped by the transform \
             until an operator releases them.</p><div class=\"scroll\"><table class=\"data\" \
             id=\"quarantined\"><thead><tr><th scope=\"col\">Dataset</th><th scope=\"col\">SHA-256</th>\
             <th scope=\"col\">Since</th></tr></thead><tbody>",
        );
        for q in &report.quarantined {
            let _ = write!(
                body,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&q.dataset),
                esc(&q.sha256),
                esc(&q.quarantined_at)
            );
        }
        body.push_str("</tbody></table></div>");
    }
    body
}

/// A page for a 4xx or 5xx answer.
pub fn problem(assets: &Assets, status: u16, title: &str, message: &str) -> String {
    let body = format!(
        "<section class=\"head\"><div><h1>{}</h1><p class=\"lede\" id=\"problem\">{}</p>\
         <p><a href=\"/\">Back to the coffee overview</a></p></div></section>\n",
        esc(&format!("{status} {title}")),
        esc(message)
    );
    page(assets, title, Nav::None, None, &body)
}
