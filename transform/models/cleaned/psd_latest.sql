-- The latest value of every key: the row with the greatest (Calendar_Year, Month) over all
-- landing files; ties go to the newest landing file.
MODEL (
  name cleaned.psd_latest,
  kind FULL,
  grain (commodity_code, country_code, market_year, attribute_id),
  audits (
    number_of_rows(threshold := 1),
    unique_combination_of_columns(columns := (commodity_code, country_code, market_year, attribute_id)),
    not_null(columns := (commodity_code, country_code, market_year, attribute_id, landing_sha256))
  ),
  description 'Latest value per (commodity, country, market year, attribute) with its landing file'
);

SELECT
  commodity_code,
  commodity,
  country_code,
  country,
  market_year,
  attribute_id,
  attribute,
  unit_id,
  unit,
  calendar_year,
  month,
  value,
  landing_seq,
  landing_sha256
FROM cleaned.psd_values
QUALIFY row_number() OVER (
  PARTITION BY commodity_code, country_code, market_year, attribute_id
  ORDER BY calendar_year DESC, month DESC, landing_seq DESC
) = 1
