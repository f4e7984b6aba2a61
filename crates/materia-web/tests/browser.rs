//! The real `materia-web` in a real browser: Debian's `/usr/bin/chromium`, driven by
//! Playwright from the tools virtualenv (`tests/browser.py` says what it checks). Screenshots go
//! to `<target>/materia-web-screenshots/`; with `MATERIA_UPDATE_SCREENSHOTS=1` (`make
//! screenshots`) the overview is also written to `docs/screenshots/overview.png` for the README.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{Server, run_bounded, site, tests_dir, unrevised_commodity};

/// `serving.value_history` and `serving.coffee_prices` as docs/INTERFACES.md names them (the
/// pipeline's own, built by the transform, replaced).
const TABLES: &str = "
DROP TABLE IF EXISTS serving.value_history;
CREATE TABLE serving.value_history (commodity_code TEXT, country_code TEXT, market_year INTEGER,
    attribute_id TEXT, value DOUBLE, valid_from_release TEXT, valid_to_release TEXT,
    landing_sha256 TEXT);
INSERT INTO serving.value_history VALUES ('0711100', 'NA', 2024, '028', 1, '2026-01', NULL, 'aa');
CREATE OR REPLACE TABLE serving.coffee_prices (month DATE, series TEXT, value DOUBLE, unit TEXT);
INSERT INTO serving.coffee_prices
    SELECT make_date(y, m, 1), s, CASE s WHEN 'arabica' THEN 150 + m * y % 7 ELSE 90 + m END,
           'US cents per pound'
      FROM range(1990, 2026) t(y), range(1, 13) u(m), (VALUES ('arabica'), ('robusta')) v(s);
CHECKPOINT;
";

#[test]
fn every_page_renders_and_charts_draw_in_chromium_with_nothing_from_elsewhere() {
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "Debian's chromium is needed at /usr/bin/chromium: make deps (scripts/install-deps.sh test)"
    );
    let python = test_support::tool("python");
    let dir = tempfile::tempdir().unwrap();
    let with_prices = dir.path().join("analytics.duckdb");
    std::fs::copy(site().serving(), &with_prices).unwrap();
    let conn = serving_reader::duckdb::Connection::open(&with_prices).unwrap();
    conn.execute_batch(TABLES).unwrap();
    drop(conn);
    let s = Server::start(&with_prices, &site().state_db(), &[]);
    let plain = Server::start(&site().serving(), &site().state_db(), &[]);
    let shots = test_support::bin_dir().join("../materia-web-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = run_bounded(
        Command::new(python)
            .env_clear()
            .env("HOME", tempfile::tempdir().unwrap().path())
            .env("PATH", "/usr/bin:/bin")
            .arg(tests_dir().join("browser.py"))
            .arg(format!("http://{}", s.addr))
            .arg(&shots)
            .arg(unrevised_commodity())
            .arg(format!("http://{}", plain.addr)),
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log_text()
    );
    println!("{stdout}screenshots in {}", shots.display());
    assert!(stdout.contains("checks passed"), "{stdout}");
    assert!(shots.join("overview.png").is_file());
    if std::env::var_os("MATERIA_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        let docs = test_support::repo_root().join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(shots.join("overview.png"), docs.join("overview.png")).unwrap();
        println!("wrote {}", docs.join("overview.png").display());
    }
}
