-- The balance sheet of each commodity, country and market year (docs/INTERFACES.md section 5),
-- recomputed from the latest values each cycle (its cost does not grow with history).
-- landing_sha256: the file that brought the newest of its values.
MODEL (
  name serving.commodity_balance,
  kind FULL,
  grain (commodity_code, country_code, market_year),
  audits (
    number_of_rows(threshold := 1),
    unique_combination_of_columns(columns := (commodity_code, country_code, market_year)),
    not_null(columns := (commodity_code, country_code, market_year, landing_sha256)),
    balance_identity
  ),
  description 'Balance sheet per commodity, country and market year; measures NULL where absent'
);

WITH balance AS (
  SELECT
    commodity_code,
    arg_max(commodity, sequence) AS commodity,
    country_code,
    arg_max(country, sequence) AS country,
    market_year,
    coalesce(max(unit) FILTER (WHERE attribute_id = '028'), max(unit)) AS unit,
    max(value) FILTER (WHERE attribute_id = '020') AS beginning_stocks,
    max(value) FILTER (WHERE attribute_id = '028') AS production,
    max(value) FILTER (WHERE attribute_id = '057') AS imports,
    max(value) FILTER (WHERE attribute_id = '086') AS total_supply,
    max(value) FILTER (WHERE attribute_id = '088') AS exports,
    max(value) FILTER (WHERE attribute_id = '125') AS domestic_consumption,
    max(value) FILTER (WHERE attribute_id = '176') AS ending_stocks,
    max(value) FILTER (WHERE attribute_id = '178') AS total_distribution,
    arg_max(landing_sha256, sequence) AS landing_sha256
  FROM cleaned.psd_latest
  WHERE attribute_id IN ('020', '028', '057', '086', '088', '125', '176', '178')
  GROUP BY commodity_code, country_code, market_year
)
SELECT
  commodity_code::TEXT AS commodity_code,
  commodity::TEXT AS commodity,
  country_code::TEXT AS country_code,
  country::TEXT AS country,
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
  (ending_stocks / nullif(domestic_consumption + exports, 0))::DOUBLE AS stocks_to_use,
  landing_sha256::TEXT AS landing_sha256
FROM balance
