//! The HTML pages. Each is complete without JavaScript: the numbers are in tables, and the
//! charts (drawn by `assets/app.js` with ECharts from the JSON blocks beside them) add to them.
//! Every table cell with a value carries it exactly in `data-value`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use materia_status::StatusReport;

use crate::api;
use crate::assets::Assets;
use crate::data::{
    Commodity, Country, DOMESTIC_CONSUMPTION, Data, ENDING_STOCKS, EXPORTS, IMPORTS, Measures,
    PRODUCTION, Revision, STOCKS_TO_USE, value,
};
use crate::html::{Nav, cell, esc, number, page, percent, ratio_cell, script_json, url_part};
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

/// A unit as PSD writes it, `(1000 60 KG BAGS)`, without its parentheses.
fn unit_label(unit: &str) -> &str {
    unit.strip_prefix('(')
        .and_then(|u| u.strip_suffix(')'))
        .unwrap_or(unit)
}

/// The chart series: production, domestic consumption, exports, ending stocks (and imports on
/// a country's page).
fn chart(
    id: &str,
    title: &str,
    unit: &str,
    percent: bool,
    years: &[i32],
    series: &[(&str, Vec<f64>)],
) -> String {
    let mut json = String::from("{");
    json.push_str("\"title\":");
    api::json_str(&mut json, title);
    json.push_str(",\"unit\":");
    api::json_str(&mut json, unit);
    let _ = write!(json, ",\"percent\":{percent},\"years\":[");
    for (i, y) in years.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let _ = write!(json, "{y}");
    }
    json.push_str("],\"series\":[");
    for (i, (name, values)) in series.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str("{\"name\":");
        api::json_str(&mut json, name);
        json.push_str(",\"values\":[");
        for (j, v) in values.iter().enumerate() {
            if j > 0 {
                json.push(',');
            }
            let text = api::plain_number(*v);
            json.push_str(if text.is_empty() { "null" } else { &text });
        }
        json.push_str("]}");
    }
    json.push_str("]}");
    format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption>\
         <div class=\"chart-box\" data-chart=\"{id}\" role=\"img\" aria-label=\"{}\"></div>\
         <script type=\"application/json\" id=\"{id}\">{}</script></figure>\n",
        esc(title),
        esc(&format!(
            "{title}, by market year; the numbers are in the table below"
        )),
        script_json(&json)
    )
}

fn balance_charts(unit: &str, rows: &[(i32, &Measures)], with_imports: bool) -> String {
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
    ));
    out.push_str(&chart(
        "chart-stocks-to-use",
        "Stocks-to-use",
        "",
        true,
        &years,
        &[("Stocks-to-use", series_of(STOCKS_TO_USE))],
    ));
    out.push_str("</section>\n");
    out
}

/// The balance by market year, newest first.
fn balance_table(
    caption: &str,
    rows: &[(i32, &Measures, Option<i64>)],
    with_count: bool,
) -> String {
    let mut out = format!(
        "<section><h2>{}</h2><div class=\"scroll\"><table class=\"data\" id=\"balance\">\
         <thead><tr><th scope=\"col\">Market year</th>",
        esc(caption)
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
        let _ = write!(
            out,
            "<tr data-market-year=\"{year}\"><th scope=\"row\">{year}</th>"
        );
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
fn top_table(c: &Commodity, id: &str, title: &str, column: &str, measure: usize) -> String {
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
        "<div class=\"card\"><h2>{} {}</h2><div class=\"scroll\"><table class=\"data\" id=\"{id}\">\
         <thead><tr><th scope=\"col\">Country</th><th scope=\"col\">{}</th><th scope=\"col\">Share</th></tr></thead><tbody>",
        esc(title),
        c.last_year,
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
            cell(r.m[measure]),
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
        "<th scope=\"col\">Country</th><th scope=\"col\">Market year</th>\
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
            "<td>{}</td><td class=\"num\">{}</td><td>{}</td>{}{}{}</tr>",
            country_link(c, &place.code, &place.name),
            r.market_year,
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

/// `/` (the coffee overview) and `/commodity/CODE`.
pub fn commodity(assets: &Assets, data: &Data, c: &Commodity, overview: bool) -> String {
    let latest_count = c.world.last().and_then(|w| w.country_count);
    let mut body = format!(
        "<section class=\"head\"><div><h1>{}{}</h1><p class=\"lede\">{} · market years {}–{}{}</p></div>{}</section>\n",
        esc(&c.name),
        if overview { ": world balance" } else { "" },
        esc(unit_label(&c.unit)),
        c.first_year,
        c.last_year,
        latest_count.map_or_else(String::new, |n| format!(
            " · {n} countries in {}",
            c.last_year
        )),
        commodity_picker(data, &c.code)
    );
    let rows: Vec<(i32, &Measures)> = c.world.iter().map(|w| (w.market_year, &w.m)).collect();
    body.push_str(&balance_charts(&c.unit, &rows, false));
    body.push_str("<section class=\"tables\">\n");
    body.push_str(&top_table(
        c,
        "top-producers",
        "Top producers",
        "Production",
        PRODUCTION,
    ));
    body.push_str(&top_table(
        c,
        "top-exporters",
        "Top exporters",
        "Exports",
        EXPORTS,
    ));
    body.push_str("</section>\n");
    let _ = writeln!(
        body,
        "<section><h2>Latest revisions</h2>{}<p><a href=\"/revisions?commodity={}\">All revisions of {}</a></p></section>",
        revisions_table(
            data,
            c.revisions
                .iter()
                .take(limits::PAGE_REVISIONS)
                .map(|&i| &data.revisions[i as usize]),
            false
        ),
        url_part(&c.code),
        esc(&c.name)
    );
    let table_rows: Vec<(i32, &Measures, Option<i64>)> = c
        .world
        .iter()
        .map(|w| (w.market_year, &w.m, w.country_count))
        .collect();
    body.push_str(&balance_table(
        &format!("World balance by market year, {}", unit_label(&c.unit)),
        &table_rows,
        true,
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

/// `/commodity/CODE/country/CC`.
pub fn country(assets: &Assets, data: &Data, c: &Commodity, k: &Country) -> String {
    let unit = if k.unit.is_empty() { &c.unit } else { &k.unit };
    let mut body = format!(
        "<section class=\"head\"><div><h1>{}: {}</h1><p class=\"lede\">{} · {} · <a href=\"/commodity/{}\">world balance</a></p></div>{}</section>\n",
        esc(&k.name),
        esc(&c.name),
        esc(&k.code),
        esc(unit_label(unit)),
        url_part(&c.code),
        country_picker(c, Some(&k.code))
    );
    if k.rows.is_empty() {
        body.push_str("<p class=\"empty\">No balance rows for this country.</p>\n");
    } else {
        let rows: Vec<(i32, &Measures)> = k.rows.iter().map(|r| (r.market_year, &r.m)).collect();
        body.push_str(&balance_charts(unit, &rows, true));
        let table_rows: Vec<(i32, &Measures, Option<i64>)> =
            k.rows.iter().map(|r| (r.market_year, &r.m, None)).collect();
        body.push_str(&balance_table(
            &format!("Balance by market year, {}", unit_label(unit)),
            &table_rows,
            false,
        ));
    }
    let _ = writeln!(
        body,
        "<section><h2>Revisions</h2>{}<p><a href=\"/revisions?commodity={}&amp;country={}\">All revisions</a></p></section>",
        revisions_table(
            data,
            k.revisions
                .iter()
                .take(limits::PAGE_REVISIONS)
                .map(|&i| &data.revisions[i as usize]),
            false
        ),
        url_part(&c.code),
        url_part(&k.code)
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
        "<section><p class=\"lede\">The newest {limit} at most. As JSON: <a href=\"/api/v1/revisions?{}\">/api/v1/revisions</a>.</p>{}</section>",
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
    pub path: String,
    pub generation: Option<&'a crate::app::Generation>,
    pub health: crate::app::Health,
}

/// `/status`: the steps as `materia-status` shows them, and the serving file.
pub fn status(
    assets: &Assets,
    report: &Result<StatusReport, String>,
    serving: &ServingView<'_>,
) -> String {
    let mut body = String::from(
        "<section class=\"head\"><div><h1>Status</h1><p class=\"lede\">The pipeline's steps, \
         from the state DB, and the serving file this server reads.</p></div></section>\n",
    );
    body.push_str("<section><h2>Serving file</h2><div class=\"scroll\"><table class=\"data\" id=\"serving\"><tbody>");
    let (health, health_class) = match &serving.health {
        crate::app::Health::Ok { .. } => ("ok".to_owned(), "ok"),
        crate::app::Health::Stale(r) => (format!("stale: {r}"), "bad"),
        crate::app::Health::Unavailable(r) => (format!("unavailable: {r}"), "bad"),
    };
    let _ = write!(
        body,
        "<tr><th scope=\"row\">Path</th><td><code>{}</code></td></tr>\
         <tr><th scope=\"row\">Health</th><td class=\"{health_class}\" id=\"health\">{}</td></tr>",
        esc(&serving.path),
        esc(&health)
    );
    if let Some(g) = serving.generation {
        let age = SystemTime::now()
            .duration_since(g.data.exported_at)
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><th scope=\"row\">Exported at</th><td id=\"exported-at\">{}</td></tr>\
             <tr><th scope=\"row\">Age</th><td id=\"age\" data-value=\"{}\">{}</td></tr>\
             <tr><th scope=\"row\">Exported from</th><td><code>{}</code></td></tr>\
             <tr><th scope=\"row\">Read by this server at</th><td>{}</td></tr>",
            esc(&g.data.exported_at_iso),
            age.as_secs(),
            esc(&materia_status::short(Duration::from_secs(age.as_secs()))),
            esc(&g.generation.source_path),
            esc(&humantime::format_rfc3339_millis(g.read_at).to_string()),
        );
        for t in &g.generation.tables {
            let _ = write!(
                body,
                "<tr><th scope=\"row\">Table <code>{0}</code></th><td class=\"num\" data-value=\"{1}\">{2}</td></tr>",
                esc(&t.table_name),
                t.row_count,
                number(Some(t.row_count as f64))
            );
        }
    }
    body.push_str("</tbody></table></div></section>\n");
    body.push_str("<section><h2>Pipeline</h2>");
    match report {
        Err(e) => {
            let _ = write!(
                body,
                "<p class=\"bad\" id=\"state-db-error\">{}</p>",
                esc(e)
            );
        }
        Ok(report) => {
            let _ = write!(
                body,
                "<p class=\"lede\">State DB <code>{}</code></p>",
                esc(&report.state_db)
            );
            body.push_str(
                "<div class=\"scroll\"><table class=\"data\" id=\"steps\"><thead><tr><th scope=\"col\">Step</th>\
                 <th scope=\"col\">Status</th><th scope=\"col\">Last run</th><th scope=\"col\">Duration</th>\
                 <th scope=\"col\">Last success</th><th scope=\"col\">Age</th></tr></thead><tbody>",
            );
            for s in &report.steps {
                let class = match s.status_str() {
                    "failed" => " class=\"bad\"",
                    "success" | "unchanged" => " class=\"ok\"",
                    _ => "",
                };
                let _ = write!(
                    body,
                    "<tr data-step=\"{}\"><th scope=\"row\">{}</th><td{class}>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
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
                if s.status_str() == "failed"
                    && let Some(e) = &s.error
                {
                    let _ = write!(
                        body,
                        "<tr class=\"error-row\"><td></td><td colspan=\"5\">{}</td></tr>",
                        esc(e)
                    );
                }
            }
            body.push_str("</tbody></table></div>");
            if !report.quarantined.is_empty() {
                body.push_str(
                    "<h3>Quarantined landing files</h3><p class=\"lede\">Skipped by the transform \
                     until an operator releases them.</p><div class=\"scroll\"><table class=\"data\" \
                     id=\"quarantined\"><thead><tr><th scope=\"col\">File</th><th scope=\"col\">Since</th>\
                     <th scope=\"col\">Reason</th></tr></thead><tbody>",
                );
                for q in &report.quarantined {
                    let _ = write!(
                        body,
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                        esc(&q.path),
                        esc(&q.quarantined_at),
                        esc(&q.reason)
                    );
                }
                body.push_str("</tbody></table></div>");
            }
        }
    }
    body.push_str("</section>\n");
    let exported = serving.generation.map(|g| g.data.exported_at_iso.as_str());
    page(assets, "Status", Nav::Status, exported, &body)
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
