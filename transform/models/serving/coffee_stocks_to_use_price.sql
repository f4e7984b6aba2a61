-- Each coffee marketing year's world ending stocks-to-use beside the average price over that
-- marketing year, per price series: the chart analysts read a balance sheet by.
--
-- World stocks-to-use is world ending stocks / world domestic consumption (contracts section
-- 13), from serving.global_balance for Coffee, Green (commodity 0711100).
-- The marketing year: PSD's coffee market year Y (labelled Y/Y+1) is taken to run from
-- October of Y to September of Y+1. USDA's world coffee tables use October-September (most
-- producers, and the ICO's coffee year, begin in October; Brazil's local year begins in July,
-- Indonesia's in April, but PSD aggregates them into the same market-year column), so one
-- calendar for every country is the honest simplification. The average is over the months
-- of that window that have a price; price_months says how many (12 for a complete year).
MODEL (
  name serving.coffee_stocks_to_use_price,
  kind FULL,
  grain (market_year, series),
  audits (
    unique_combination_of_columns(columns := (market_year, series)),
    not_null(columns := (market_year, series, avg_price))
  ),
  description 'World coffee ending stocks-to-use per marketing year (October-September) with the average monthly price over that year, per price series'
);

WITH world AS (
  SELECT
    market_year,
    unit,
    ending_stocks,
    domestic_consumption
  FROM serving.global_balance
  WHERE commodity_code = '0711100'
),
prices AS (
  SELECT
    CASE WHEN month(month) >= 10 THEN year(month) ELSE year(month) - 1 END AS market_year,
    series,
    value,
    unit
  FROM serving.coffee_prices
),
yearly AS (
  SELECT
    market_year,
    series,
    avg(value) AS avg_price,
    count(*) AS price_months,
    min(unit) AS price_unit
  FROM prices
  GROUP BY market_year, series
)
SELECT
  w.market_year::INTEGER AS market_year,
  (w.market_year::TEXT || '/' || lpad(((w.market_year + 1) % 100)::TEXT, 2, '0'))::TEXT AS marketing_year,
  make_date(w.market_year::INTEGER, 10, 1) AS marketing_year_start,
  w.ending_stocks::DOUBLE AS ending_stocks,
  w.domestic_consumption::DOUBLE AS domestic_consumption,
  w.unit::TEXT AS balance_unit,
  (w.ending_stocks / nullif(w.domestic_consumption, 0))::DOUBLE AS stocks_to_use,
  y.series::TEXT AS series,
  y.avg_price::DOUBLE AS avg_price,
  y.price_months::INTEGER AS price_months,
  y.price_unit::TEXT AS price_unit
FROM world AS w
JOIN yearly AS y
  ON y.market_year = w.market_year
ORDER BY y.series, w.market_year
