//! The tables other steps add to the serving file, built here as docs/INTERFACES.md
//! names them (`serving.value_history`, `serving.coffee_prices`) in a copy of the pipeline's
//! serving file: the releases and release-changes routes against a DuckDB query, the front
//! page's release panel, the coffee page's price charts, and the notes when the tables are
//! absent. Also a CSV formula-injection case through a real answer.

#![allow(clippy::unwrap_used)]

mod support;

use serving_reader::duckdb::Connection;
use support::{COFFEE, Server, site};

/// A copy of the site's serving file with `sql` run on it.
fn serving_with(dir: &std::path::Path, sql: &str) -> std::path::PathBuf {
    let path = dir.join("analytics.duckdb");
    std::fs::copy(site().serving(), &path).unwrap();
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(sql).unwrap();
    conn.execute_batch("CHECKPOINT").unwrap();
    drop(conn);
    path
}

/// The pipeline's own `value_history` (and its empty `coffee_prices`) replaced by known rows.
const HISTORY_AND_PRICES: &str = "
DROP TABLE IF EXISTS serving.value_history;
CREATE TABLE serving.value_history (commodity_code TEXT, country_code TEXT, market_year INTEGER,
    attribute_id TEXT, value DOUBLE, valid_from_release TEXT, valid_to_release TEXT,
    landing_sha256 TEXT);
INSERT INTO serving.value_history VALUES
    ('0711100', 'BR', 2024, '028', 66000, '2026-01', '2026-02', 'aaaa'),
    ('0711100', 'BR', 2024, '028', 66400, '2026-02', NULL, 'bbbb'),
    ('0711100', 'VM', 2024, '028', 29000, '2026-01', NULL, 'aaaa');
CREATE OR REPLACE TABLE serving.coffee_prices (month DATE, series TEXT, value DOUBLE, unit TEXT);
INSERT INTO serving.coffee_prices
    SELECT make_date(y, m, 1), s, CASE s WHEN 'arabica' THEN 150 + m ELSE 90 + m END,
           'US cents per pound'
      FROM range(2018, 2025) t(y), range(1, 13) u(m), (VALUES ('arabica'), ('robusta')) v(s);
";

#[test]
fn releases_and_release_changes_come_from_the_serving_file() {
    let dir = tempfile::tempdir().unwrap();
    let serving = serving_with(dir.path(), HISTORY_AND_PRICES);
    let s = Server::start(&serving, &site().state_db(), &[]);

    let r = s.get("/api/v1/releases");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"releases": [
            {"release": "2026-01", "landing_sha256": "aaaa"},
            {"release": "2026-02", "landing_sha256": "bbbb"}
        ]})
    );

    // The latest release's changes to coffee, against the revisions table.
    let conn = Connection::open_with_flags(
        &serving,
        serving_reader::duckdb::Config::default()
            .access_mode(serving_reader::duckdb::AccessMode::ReadOnly)
            .unwrap(),
    )
    .unwrap();
    let (release, n, total): (String, i64, f64) = conn
        .query_row(
            "WITH r AS (SELECT * FROM serving.estimate_revisions WHERE commodity_code = ?),
                  latest AS (SELECT max(revised_in) AS m FROM r)
             SELECT (SELECT m FROM latest), count(*), coalesce(sum(change), 0)
               FROM r WHERE revised_in = (SELECT m FROM latest)",
            [COFFEE],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert!(n > 0, "the fixture's coffee has revisions");
    let body = s
        .get(&format!("/api/v1/release-changes?commodity={COFFEE}"))
        .json();
    assert_eq!(body["release"], release.as_str());
    let groups = body["changes"].as_array().unwrap();
    let countries: usize = groups
        .iter()
        .map(|g| g["countries"].as_array().unwrap().len())
        .sum();
    assert_eq!(countries as i64, n, "every revision of the release, once");
    let sum: f64 = groups.iter().map(|g| g["change"].as_f64().unwrap()).sum();
    assert!(
        (sum - total).abs() < 1e-6 * total.abs().max(1.0),
        "{sum} vs {total}"
    );
    for g in groups {
        let changes: Vec<f64> = g["countries"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["change"].as_f64())
            .map(f64::abs)
            .collect();
        assert!(
            changes.windows(2).all(|w| w[0] >= w[1]),
            "ranked: {changes:?}"
        );
        let my = g["market_year"].as_i64().unwrap();
        assert_eq!(
            g["marketing_year"],
            format!("{my}/{:02}", (my + 1) % 100).as_str()
        );
    }
    // The same as CSV, and a named release; bad and unknown ones.
    let csv = s
        .get(&format!(
            "/api/v1/release-changes?commodity={COFFEE}&release={release}&format=csv"
        ))
        .text();
    assert_eq!(csv.lines().count() as i64, n + 1, "{csv}");
    assert_eq!(
        s.get(&format!(
            "/api/v1/release-changes?commodity={COFFEE}&release=2026-13"
        ))
        .status,
        400
    );
    assert_eq!(
        s.get(&format!(
            "/api/v1/release-changes?commodity={COFFEE}&release=1999-01"
        ))
        .status,
        404
    );

    // The front page leads with the panel; the coffee page draws the price charts.
    let page = s.get("/").text();
    let panel = page.find("id=\"release-changes\"").unwrap();
    assert!(
        panel < page.find("id=\"chart-balance\"").unwrap(),
        "the panel leads"
    );
    assert!(page.contains(&format!("data-release=\"{release}\"")));
    assert!(page.contains("id=\"chart-prices\"") && page.contains("id=\"chart-price-stocks\""));
    assert!(!page.contains("id=\"no-prices\""));
    let start = page.find("id=\"chart-price-stocks\">").unwrap();
    let json = &page[start + "id=\"chart-price-stocks\">".len()..];
    let json: serde_json::Value =
        serde_json::from_str(&json[..json.find("</script>").unwrap()]).unwrap();
    let arabica = &json["series"][0];
    assert_eq!(arabica[0], "arabica");
    // October 2018 to September 2024: six complete coffee years 2018/19 to 2023/24, each the
    // mean of months 10..12 and 1..9 (150 + month), against world stocks-to-use where known.
    let points = arabica[1].as_array().unwrap();
    assert!(!points.is_empty(), "{json}");
    for point in points {
        assert_eq!(point[1].as_f64().unwrap(), 150.0 + 78.0 / 12.0, "{point}");
    }
}

#[test]
fn without_the_new_tables_the_site_says_so_and_hides_them() {
    // The pipeline builds both tables (the transform's history, and prices, empty without a
    // prices file); a serving file of an older release has neither.
    let dir = tempfile::tempdir().unwrap();
    let serving = serving_with(
        dir.path(),
        "DROP TABLE serving.value_history; DROP TABLE serving.coffee_prices;",
    );
    let s = Server::start(&serving, &site().state_db(), &[]);
    let r = s.get("/api/v1/releases");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["releases"], serde_json::json!([]));
    assert!(r.json()["note"].as_str().unwrap().contains("value_history"));
    let page = s.get("/").text();
    assert!(page.contains("id=\"no-prices\""), "{page}");
    assert!(!page.contains("id=\"chart-prices\""));
}

#[test]
fn csv_cells_from_the_data_are_neutralised() {
    let dir = tempfile::tempdir().unwrap();
    let serving = serving_with(
        dir.path(),
        "UPDATE serving.commodity_balance SET country = '=HYPERLINK(\"http://x\",\"y\")'
          WHERE country_code = 'NA';
         UPDATE serving.commodity_balance SET unit = '@SUM(A1)' WHERE country_code = 'NA';",
    );
    let s = Server::start(&serving, &site().state_db(), &[]);
    let csv = s
        .get(&format!(
            "/api/v1/commodity-balance?commodity={COFFEE}&country=NA&format=csv"
        ))
        .text();
    let row = csv.lines().nth(1).unwrap();
    assert!(
        row.contains(",\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\","),
        "{row}"
    );
    let json = s
        .get(&format!(
            "/api/v1/commodity-balance?commodity={COFFEE}&country=NA"
        ))
        .json();
    assert_eq!(
        json["country"], "=HYPERLINK(\"http://x\",\"y\")",
        "JSON is not altered"
    );
    assert!(row.contains(",\"'@SUM(A1)\","), "{row}");
    // Numbers stay numbers: every change (negative ones too) is a plain number.
    let revisions = s
        .get(&format!(
            "/api/v1/revisions?commodity={COFFEE}&limit=10000&format=csv"
        ))
        .text();
    let changes: Vec<&str> = revisions
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap())
        .filter(|c| !c.is_empty())
        .collect();
    assert!(!changes.is_empty());
    for c in changes {
        assert!(
            c.parse::<f64>().is_ok(),
            "a change that is not a number: {c:?}"
        );
    }
}
