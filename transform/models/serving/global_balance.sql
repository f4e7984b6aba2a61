-- World balance of each commodity and market year: the eight measures summed over countries.
MODEL (
  name serving.global_balance,
  kind FULL,
  grain (commodity_code, market_year),
  audits (
    number_of_rows(threshold := 1),
    unique_combination_of_columns(columns := (commodity_code, market_year)),
    not_null(columns := (commodity_code, market_year))
  ),
  description 'Balance sheet per commodity and market year, summed over countries'
);

WITH world AS (
  SELECT
    commodity_code,
    arg_max(commodity, landing_sha256) AS commodity,
    market_year,
    mode(unit) AS unit,
    sum(beginning_stocks) AS beginning_stocks,
    sum(production) AS production,
    sum(imports) AS imports,
    sum(total_supply) AS total_supply,
    sum(exports) AS exports,
    sum(domestic_consumption) AS domestic_consumption,
    sum(ending_stocks) AS ending_stocks,
    sum(total_distribution) AS total_distribution,
    count(DISTINCT country_code) AS country_count
  FROM serving.commodity_balance
  GROUP BY commodity_code, market_year
)
SELECT
  commodity_code::TEXT AS commodity_code,
  commodity::TEXT AS commodity,
  market_year::INTEGER AS market_year,
  unit::TEXT AS unit,
  beginning_stocks::DOUBLE AS beginning_stocks,
  production::DOUBLE AS production,
  imports::DOUBLE AS imports,
  total_supply::DOUBLE AS total_supply,
  exports::DOUBLE AS exports,
  domestic_consumption::DOUBLE AS domestic_consumption,
  ending_stocks::DOUBLE AS ending_stocks,
  total_distribution::DOUBLE AS total_distribution,
  country_count::INTEGER AS country_count,
  (ending_stocks / nullif(domestic_consumption + exports, 0))::DOUBLE AS stocks_to_use
FROM world
