"""materia-web in a real browser: Debian's Chromium driven by Playwright (PyPI `playwright`, never
a downloaded browser).

Usage: browser.py BASE_URL SCREENSHOT_DIR OTHER_COMMODITY BASE_URL_WITHOUT_PRICES

BASE_URL serves a file with `serving.coffee_prices` and `serving.value_history`; the other one
a file without them.

Every page renders; the charts draw (their canvases have painted pixels); the console shows no
error; no request leaves 127.0.0.1; the commodity picker navigates; a phone-sized viewport has
no horizontal overflow; dark mode follows prefers-color-scheme; without JavaScript the numbers
are still there; marketing years are labelled `2023/24`; the unit switch multiplies every value
by exactly 0.06; the release-changes panel leads the front page; the price and price against
stocks-to-use charts draw, and are replaced by a note without prices. Screenshots go to
SCREENSHOT_DIR. Prints how many checks passed; exits 1 on
the first failure.
"""

import sys
import tempfile
import urllib.parse

from playwright.sync_api import sync_playwright

import re

BASE, SHOTS, OTHER, BASE_NO_PRICES = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000
PAGES = ["/", f"/commodity/{OTHER}", "/commodity/0711100/country/NA", "/revisions",
         "/revisions?commodity=0711100&country=NA", "/status"]
CHART_PAGES = {"/", f"/commodity/{OTHER}", "/commodity/0711100/country/NA"}
checks = 0


def check(ok, what):
    global checks
    if not ok:
        print(f"browser: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


# Painted pixels of every chart's canvas: a blank canvas has none.
PAINTED = """() => Array.from(document.querySelectorAll('[data-chart] canvas')).map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
})"""


class Watch:
    """Console errors, page errors and every request of a context."""

    def __init__(self, context):
        self.errors, self.requests = [], []
        context.route("**/*", self.route)
        context.on("page", self.attach)
        for page in context.pages:
            self.attach(page)

    def attach(self, page):
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.errors.append(f"failed request: {r.url} {r.failure}"))

    def route(self, route):
        url = route.request.url
        self.requests.append(url)
        host = urllib.parse.urlsplit(url).hostname
        if host != "127.0.0.1":
            route.abort()
        else:
            route.continue_()

    def assert_local(self, what):
        outside = [u for u in self.requests if urllib.parse.urlsplit(u).hostname != "127.0.0.1"]
        check(not outside, f"{what}: requests left 127.0.0.1: {outside}")
        check(not self.errors, f"{what}: {self.errors}")


def context(p, **options):
    profile = tempfile.mkdtemp(prefix="materia-web-chromium-")
    ctx = p.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=FLAGS, timeout=TIMEOUT_MS,
        **options)
    ctx.set_default_timeout(TIMEOUT_MS)
    return ctx


def charts_drawn(page, what):
    page.wait_for_function("() => Number(document.documentElement.dataset.charts || 0) >= 2")
    painted = page.evaluate(PAINTED)
    check(len(painted) >= 2 and all(n > 500 for n in painted), f"{what}: charts not drawn: {painted}")


with sync_playwright() as p:
    # Desktop, light.
    ctx = context(p, viewport={"width": 1280, "height": 900}, color_scheme="light")
    watch = Watch(ctx)
    page = ctx.pages[0] if ctx.pages else ctx.new_page()
    for path in PAGES:
        response = page.goto(BASE + path, wait_until="load")
        check(response is not None and response.status == 200, f"{path} answered {response and response.status}")
        check(page.locator("h1").count() == 1, f"{path} has a heading")
        check(page.title().endswith("· Materia"), f"{path} has a title")
        if path in CHART_PAGES:
            charts_drawn(page, path)
        if path == "/":
            page.screenshot(path=f"{SHOTS}/overview.png")
        else:
            name = path.strip("/").replace("/", "-").replace("?", "-").replace("&", "-").replace("=", "-")
            page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)
    # Marketing years, the release panel first, the price charts drawn.
    page.goto(BASE + "/", wait_until="load")
    labels = page.locator("#balance tbody th").all_inner_texts()
    check(labels and all(re.match(r"^\d{4}/\d{2}", t) for t in labels), f"marketing year labels {labels[:3]}")
    first = page.evaluate("() => document.querySelector('main > section[id]').id")
    check(first == "release-changes", f"the front page leads with {first}")
    check(page.locator("#changes tbody tr").count() >= 1, "release changes listed")
    painted = page.evaluate("""() => ['chart-prices', 'chart-price-stocks'].map(id => {
      const c = document.querySelector(`[data-chart="${id}"] canvas`);
      if (!c) return 0;
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })""")
    check(all(n > 500 for n in painted), f"price charts drawn: {painted}")
    # The unit switch: every value times 0.06, exactly as Python multiplies doubles.
    page.goto(BASE + "/commodity/0711100/country/NA", wait_until="load")
    native = page.evaluate("() => Array.from(document.querySelectorAll('#balance td[data-value]')).map(td => td.dataset.value)")
    page.locator("#unit-switch a", has_text="MT").click()
    page.wait_for_url("**unit=mt")
    charts_drawn(page, "metric tons")
    mt = page.evaluate("() => Array.from(document.querySelectorAll('#balance td[data-value]')).map(td => td.dataset.value)")
    check(len(native) == len(mt) > 0, "the same cells in both units")
    per_row = 9
    for i, (a, b) in enumerate(zip(native, mt)):
        if a == "":
            check(b == "", f"null stays null at {i}")
        elif i % per_row == 8:
            check(float(a) == float(b), f"stocks-to-use unchanged at {i}: {a} {b}")
        else:
            check(float(a) * 0.06 == float(b), f"cell {i}: {a} x 0.06 != {b}")
    check("MT" in page.locator("h1 + p.lede").inner_text(), "the unit named")
    # The picker navigates.
    page.goto(BASE + "/", wait_until="load")
    page.select_option("#pick-commodity", OTHER)
    page.wait_for_url(f"**/commodity/{OTHER}")
    check(page.url.endswith(f"/commodity/{OTHER}"), f"picker went to {page.url}")
    charts_drawn(page, "after the picker")
    page.select_option("#pick-country", "NA")
    page.wait_for_url(f"**/commodity/{OTHER}/country/NA")
    check("Netherlands Antilles" in page.locator("h1").inner_text(), "country picker")
    # A link from the top producers to a country page.
    page.goto(BASE + "/", wait_until="load")
    page.locator("#top-producers a").first.click()
    page.wait_for_url("**/commodity/0711100/country/*")
    charts_drawn(page, "a top producer's page")
    # Without prices: the charts are hidden and a note says why.
    page.goto(BASE_NO_PRICES + "/", wait_until="load")
    check(page.locator("#no-prices").count() == 1, "the no-prices note")
    check(page.locator('[data-chart="chart-prices"]').count() == 0, "no price chart without prices")
    charts_drawn(page, "overview without prices")
    watch.assert_local("desktop")
    ctx.close()

    # A phone, dark.
    ctx = context(p, viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                  has_touch=True, color_scheme="dark")
    watch = Watch(ctx)
    page = ctx.pages[0] if ctx.pages else ctx.new_page()
    for path in ["/", "/commodity/0711100/country/NA", "/revisions", "/status"]:
        page.goto(BASE + path, wait_until="load")
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        check(overflow <= 1, f"{path} is {overflow}px wider than a phone")
        if path in CHART_PAGES:
            charts_drawn(page, f"phone {path}")
            width = page.evaluate("() => document.querySelector('[data-chart] canvas').getBoundingClientRect().width")
            check(0 < width <= 390, f"phone chart width {width}")
    page.goto(BASE + "/", wait_until="load")
    charts_drawn(page, "phone overview")
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    rgb = [int(x) for x in background[background.index("(") + 1:background.index(")")].split(",")[:3]]
    check(sum(rgb) < 150, f"dark background expected, got {background}")
    page.screenshot(path=f"{SHOTS}/overview-phone-dark.png")
    watch.assert_local("phone")
    ctx.close()

    # Without JavaScript: the numbers are in the tables.
    ctx = context(p, viewport={"width": 1024, "height": 800}, java_script_enabled=False)
    watch = Watch(ctx)
    page = ctx.pages[0] if ctx.pages else ctx.new_page()
    page.goto(BASE + "/", wait_until="load")
    rows = page.locator("#balance tbody tr").count()
    check(rows > 10, f"{rows} balance rows without JavaScript")
    check(page.locator("#top-producers tbody tr").count() >= 3, "top producers without JavaScript")
    page.locator("#pick-commodity").select_option(OTHER)
    page.locator("form.picker button").first.click()
    page.wait_for_url(f"**/commodity/{OTHER}")
    check(page.locator("#balance tbody tr").count() > 10, "the picker's form works without JavaScript")
    watch.assert_local("no JavaScript")
    ctx.close()

print(f"browser: {checks} checks passed")
