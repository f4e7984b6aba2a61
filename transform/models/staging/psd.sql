-- Typed PSD rows: codes stay text, years and months become integers, values doubles.
MODEL (
  name staging.psd,
  kind VIEW,
  description 'PSD rows of the staged landing files with typed columns and snake_case names'
);

SELECT
  Commodity_Code::TEXT AS commodity_code,
  Commodity_Description::TEXT AS commodity,
  Country_Code::TEXT AS country_code,
  Country_Name::TEXT AS country,
  Market_Year::INTEGER AS market_year,
  Calendar_Year::INTEGER AS calendar_year,
  Month::INTEGER AS month,
  Attribute_ID::TEXT AS attribute_id,
  Attribute_Description::TEXT AS attribute,
  Unit_ID::TEXT AS unit_id,
  Unit_Description::TEXT AS unit,
  Value::DOUBLE AS value,
  landing_seq::INTEGER AS landing_seq,
  landing_sha256::TEXT AS landing_sha256,
  landing_row::BIGINT AS landing_row
FROM raw.psd_rows
