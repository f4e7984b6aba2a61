-- World balance of each commodity and market year: the eight measures summed over countries,
-- with the number of countries that reported each measure (country_count_<measure>: a sum covers
-- only the countries present, so a change in coverage is not a change in the market).
-- World stocks-to-use is ending stocks / domestic consumption: world exports and imports cancel.
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
    count(DISTINCT country_code) AS country_count,
    count(beginning_stocks) AS country_count_beginning_stocks,
    count(production) AS country_count_production,
    count(imports) AS country_count_imports,
    count(total_supply) AS country_count_total_supply,
    count(exports) AS country_count_exports,
    count(domestic_consumption) AS country_count_domestic_consumption,
    count(ending_stocks) AS country_count_ending_stocks,
    count(total_distribution) AS country_count_total_distribution
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
  country_count_beginning_stocks::INTEGER AS country_count_beginning_stocks,
  country_count_production::INTEGER AS country_count_production,
  country_count_imports::INTEGER AS country_count_imports,
  country_count_total_supply::INTEGER AS country_count_total_supply,
  country_count_exports::INTEGER AS country_count_exports,
  country_count_domestic_consumption::INTEGER AS country_count_domestic_consumption,
  country_count_ending_stocks::INTEGER AS country_count_ending_stocks,
  country_count_total_distribution::INTEGER AS country_count_total_distribution,
  (ending_stocks / nullif(domestic_consumption, 0))::DOUBLE AS stocks_to_use
FROM world
