"""The API's and the pages' values against a DuckDB query of the same serving file.

Usage: values.py BASE_URL SERVING_FILE UNREVISED_COMMODITY

Independent of the server's code: Python's duckdb reads the serving file, urllib fetches the
answers, json/csv/html.parser read them (Python parses floats exactly), and every value must be
equal, NULL for null. Exits 1 naming the first difference; prints how many checks passed.
"""

import csv
import html.parser
import io
import json
import sys
import urllib.error
import urllib.request

import duckdb

BASE, SERVING, UNREVISED = sys.argv[1], sys.argv[2], sys.argv[3]
COFFEE = "0711100"
MEASURES = ["beginning_stocks", "production", "imports", "total_supply", "exports",
            "domestic_consumption", "ending_stocks", "total_distribution", "stocks_to_use"]
TIMEOUT_SECS = 30
checks = 0


def check(ok, what):
    global checks
    if not ok:
        print(f"values: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


def fetch(path):
    try:
        with urllib.request.urlopen(BASE + path, timeout=TIMEOUT_SECS) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def api(path):
    status, headers, body = fetch(path)
    check(status == 200, f"{path} answered {status}: {body[:200]!r}")
    check(headers.get("Content-Type") == "application/json", f"{path} content type")
    return json.loads(body)


db = duckdb.connect(SERVING, read_only=True)


def rows(sql, *params):
    cur = db.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def same(a, b, what):
    check(a == b, f"{what}: API {a!r} != DuckDB {b!r}")


def same_rows(got, want, fields, what):
    check(len(got) == len(want), f"{what}: {len(got)} rows, DuckDB has {len(want)}")
    for i, (g, w) in enumerate(zip(got, want)):
        for f in fields:
            gv, wv = g[f], w[f]
            if isinstance(wv, float) or isinstance(gv, float):
                check(gv is not None and wv is not None and float(gv) == wv or gv is None and wv is None,
                      f"{what} row {i} {f}: API {gv!r} != DuckDB {wv!r}")
            else:
                check(gv == wv, f"{what} row {i} {f}: API {gv!r} != DuckDB {wv!r}")


# The fixture is what the test means it to be.
check(rows("SELECT count(*) AS n FROM serving.estimate_revisions WHERE commodity_code = ?", UNREVISED)[0]["n"] == 0,
      f"the fixture's {UNREVISED} has no revisions")
check(rows("SELECT count(*) AS n FROM serving.estimate_revisions WHERE commodity_code = ?", COFFEE)[0]["n"] > 0,
      "the fixture's coffee has revisions")
check(rows("SELECT count(*) AS n FROM serving.commodity_balance WHERE country_code = 'NA'")[0]["n"] > 0,
      "the fixture has the NA country")

# /api/v1/commodities
world = rows("SELECT * FROM serving.global_balance ORDER BY commodity_code, market_year")
want = {}
for r in world:
    w = want.setdefault(r["commodity_code"], {"commodity_code": r["commodity_code"], "first_year": r["market_year"]})
    w.update(commodity=r["commodity"], unit=r["unit"], last_year=r["market_year"])
got = api("/api/v1/commodities")["commodities"]
same_rows(got, [want[k] for k in sorted(want)], ["commodity_code", "commodity", "unit", "first_year", "last_year"],
          "commodities")

# /api/v1/global-balance, coffee and the commodity without revisions
for code in [COFFEE, UNREVISED]:
    body = api(f"/api/v1/global-balance?commodity={code}")
    want = rows("SELECT * FROM serving.global_balance WHERE commodity_code = ? ORDER BY market_year", code)
    same(body["commodity_code"], code, "global-balance code")
    same(body["commodity"], want[-1]["commodity"], "global-balance name")
    same(body["unit"], want[-1]["unit"], "global-balance unit")
    same_rows(body["rows"], want, ["market_year", *MEASURES, "country_count"], f"global-balance {code}")

    # The same as CSV.
    status, headers, raw = fetch(f"/api/v1/global-balance?commodity={code}&format=csv")
    check(status == 200 and headers.get("Content-Type", "").startswith("text/csv"), "CSV answer")
    table = list(csv.DictReader(io.StringIO(raw.decode())))
    parsed = [{k: (None if v == "" else (int(v) if k in ("market_year", "country_count") else float(v)))
               for k, v in r.items() if k in ["market_year", *MEASURES, "country_count"]} for r in table]
    same_rows(parsed, want, ["market_year", *MEASURES, "country_count"], f"global-balance CSV {code}")

# World rows: countries per measure, and the world's stocks-to-use definition.
COUNTS = [f"country_count_{m}" for m in MEASURES[:8]]
body = api(f"/api/v1/global-balance?commodity={COFFEE}")
want = rows("SELECT * FROM serving.global_balance WHERE commodity_code = ? ORDER BY market_year", COFFEE)
same_rows(body["rows"], want, COUNTS, "global-balance country_count_<measure>")
for g, w in zip(body["rows"], want):
    same(g["marketing_year"], f"{w['market_year']}/{(w['market_year'] + 1) % 100:02d}", "marketing_year label")
    check(isinstance(g["market_year"], int), "market_year stays an integer")
check(rows("SELECT count(*) AS n FROM serving.global_balance WHERE domestic_consumption <> 0 AND "
           "stocks_to_use IS DISTINCT FROM ending_stocks / domestic_consumption")[0]["n"] == 0,
      "world stocks_to_use is ending_stocks / domestic_consumption")

# ?unit=mt: 60-kg bags to metric tons, the same scale, each quantity x 0.06 as DuckDB computes it.
check("60 KG BAGS" in want[-1]["unit"].upper(), f"coffee's unit is bags: {want[-1]['unit']}")
mt_sql = ", ".join(f"{m} * 0.06 AS {m}" for m in MEASURES[:8])
body = api(f"/api/v1/global-balance?commodity={COFFEE}&unit=mt")
same(body["unit"], want[-1]["unit"].upper().replace("60 KG BAGS", "MT"), "mt unit label")
want_mt = rows(f"SELECT market_year, {mt_sql}, stocks_to_use, country_count FROM serving.global_balance "
               "WHERE commodity_code = ? ORDER BY market_year", COFFEE)
same_rows(body["rows"], want_mt, ["market_year", *MEASURES, "country_count"], "global-balance mt")
body = api(f"/api/v1/commodity-balance?commodity={COFFEE}&country=NA&unit=mt")
want_na = rows(f"SELECT market_year, {mt_sql}, stocks_to_use FROM serving.commodity_balance "
               "WHERE commodity_code = ? AND country_code = 'NA' ORDER BY market_year", COFFEE)
same_rows(body["rows"], want_na, ["market_year", *MEASURES], "commodity-balance NA mt")
status, headers, raw = fetch(f"/api/v1/global-balance?commodity={COFFEE}&unit=mt&format=csv")
table = list(csv.DictReader(io.StringIO(raw.decode())))
check(all(r["unit"] == body["unit"] for r in table), "the CSV names the converted unit")
check(all(r["marketing_year"] == f"{r['market_year']}/{(int(r['market_year']) + 1) % 100:02d}" for r in table),
      "CSV marketing_year labels")
parsed = [{m: (None if r[m] == "" else float(r[m])) for m in MEASURES} for r in table]
same_rows(parsed, want_mt, MEASURES, "global-balance mt CSV")
status, _, _ = fetch(f"/api/v1/global-balance?commodity={COFFEE}&unit=kg")
check(status == 400, f"unit=kg is 400, not {status}")

# One country's history: NA is a country, not a NULL.
body = api(f"/api/v1/commodity-balance?commodity={COFFEE}&country=NA")
want = rows("SELECT * FROM serving.commodity_balance WHERE commodity_code = ? AND country_code = 'NA' "
            "ORDER BY market_year", COFFEE)
check(len(want) > 0, "NA has coffee rows")
same(body["country_code"], "NA", "country code")
same(body["country"], want[-1]["country"], "country name")
same(body["unit"], want[-1]["unit"], "country unit")
same_rows(body["rows"], want, ["market_year", *MEASURES], "commodity-balance NA")

# Every country of the latest year, by production descending.
latest = rows("SELECT max(market_year) AS y FROM serving.global_balance WHERE commodity_code = ?", COFFEE)[0]["y"]
body = api(f"/api/v1/commodity-balance?commodity={COFFEE}&market_year={latest}")
want = rows("SELECT * FROM serving.commodity_balance WHERE commodity_code = ? AND market_year = ? "
            "ORDER BY production DESC NULLS LAST, country_code", COFFEE, latest)
same_rows(body["rows"], want, ["country_code", "country", "market_year", *MEASURES], "commodity-balance year")

# An empty result: a valid year without rows.
body = api(f"/api/v1/commodity-balance?commodity={COFFEE}&market_year=1901")
check(body["rows"] == [], "no rows for 1901")
check(rows("SELECT count(*) AS n FROM serving.commodity_balance WHERE market_year = 1901")[0]["n"] == 0,
      "DuckDB has no 1901 either")

# Revisions: newest first, filtered by country, limited.
order = "ORDER BY revised_in DESC, country_code, market_year DESC, attribute_id"
fields = ["country_code", "country", "market_year", "attribute_id", "attribute", "revised_in",
          "previous_value", "value", "change"]
for query, sql, params in [
    (f"commodity={COFFEE}", f"WHERE commodity_code = ? {order} LIMIT 100", [COFFEE]),
    (f"commodity={COFFEE}&limit=10000", f"WHERE commodity_code = ? {order} LIMIT 10000", [COFFEE]),
    (f"commodity={COFFEE}&country=NA", f"WHERE commodity_code = ? AND country_code = 'NA' {order} LIMIT 100",
     [COFFEE]),
    (f"commodity={COFFEE}&limit=3", f"WHERE commodity_code = ? {order} LIMIT 3", [COFFEE]),
]:
    body = api(f"/api/v1/revisions?{query}")
    same_rows(body["rows"], rows(f"SELECT * FROM serving.estimate_revisions {sql}", *params), fields,
              f"revisions {query}")
body = api(f"/api/v1/revisions?commodity={UNREVISED}")
check(body["rows"] == [], f"{UNREVISED} has no revisions in the API")


class Cells(html.parser.HTMLParser):
    """data-value of every cell, by table id and row."""

    def __init__(self):
        super().__init__()
        self.tables, self.table, self.row = {}, None, None
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.table = self.tables.setdefault(a.get("id", ""), [])
        elif tag == "tr" and self.table is not None:
            self.row = {"attrs": a, "values": []}
            self.table.append(self.row)
        elif tag == "td" and self.row is not None and "data-value" in a:
            self.row["values"].append(a["data-value"])

    def handle_endtag(self, tag):
        if tag == "table":
            self.table = None

    def handle_data(self, data):
        self.text.append(data)


def page(path):
    status, headers, body = fetch(path)
    check(status == 200, f"{path} answered {status}")
    check(headers.get("Content-Type") == "text/html; charset=utf-8", f"{path} content type")
    p = Cells()
    p.feed(body.decode())
    return p


def value(text):
    return None if text == "" else float(text)


# The overview's table holds coffee's world balance, newest year first.
p = page("/")
want = rows("SELECT * FROM serving.global_balance WHERE commodity_code = ? ORDER BY market_year DESC", COFFEE)
got = [r for r in p.tables["balance"] if r["values"]]
check(len(got) == len(want), "overview rows")
for g, w in zip(got, want):
    check(int(g["attrs"]["data-market-year"]) == w["market_year"], "overview year")
    got_values = [value(v) for v in g["values"]]
    check(got_values == [w[m] for m in MEASURES] + [float(w["country_count"])],
          f"overview {w['market_year']}: {got_values}")

# Top producers: the latest year's countries by production.
top = [r["attrs"]["data-country"] for r in p.tables["top-producers"] if "data-country" in r["attrs"]]
want = rows("SELECT country_code FROM serving.commodity_balance WHERE commodity_code = ? AND market_year = ? "
            "AND production > 0 ORDER BY production DESC, country_code LIMIT 10", COFFEE, latest)
check(top == [r["country_code"] for r in want], f"top producers {top}")

# The NA page.
p = page(f"/commodity/{COFFEE}/country/NA")
want = rows("SELECT * FROM serving.commodity_balance WHERE commodity_code = ? AND country_code = 'NA' "
            "ORDER BY market_year DESC", COFFEE)
got = [r for r in p.tables["balance"] if r["values"]]
check(len(got) == len(want), "NA page rows")
for g, w in zip(got, want):
    check([value(v) for v in g["values"]] == [w[m] for m in MEASURES], f"NA page {w['market_year']}")
check("Netherlands Antilles" in "".join(p.text), "NA page names the country")

# The NA page in metric tons: every cell x 0.06, stocks-to-use unchanged.
p = page(f"/commodity/{COFFEE}/country/NA?unit=mt")
got = [r for r in p.tables["balance"] if r["values"]]
for g, w in zip(got, reversed(want_na)):
    check([value(v) for v in g["values"]] == [w[m] for m in MEASURES], f"NA page mt {w['market_year']}")
check("(1000 MT)" in "".join(p.text) or "1000 MT" in "".join(p.text), "the mt page names the unit")

# The commodity without revisions says so.
p = page(f"/commodity/{UNREVISED}")
check("No revisions recorded." in "".join(p.text), "no revisions shown")

print(f"values: {checks} checks passed")
