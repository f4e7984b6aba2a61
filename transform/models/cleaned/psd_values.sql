-- The value of every key in every landing snapshot: the history that revisions are read from.
-- Within one snapshot a key should appear once; should upstream repeat it, the row with the
-- greatest (Calendar_Year, Month) wins.
MODEL (
  name cleaned.psd_values,
  kind FULL,
  grain (landing_seq, commodity_code, country_code, market_year, attribute_id),
  audits (
    number_of_rows(threshold := 1),
    unique_combination_of_columns(columns := (landing_seq, commodity_code, country_code, market_year, attribute_id)),
    not_null(columns := (landing_seq, landing_sha256, commodity_code, country_code, market_year, attribute_id, calendar_year, month))
  ),
  description 'One row per landing snapshot and (commodity, country, market year, attribute)'
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
FROM staging.psd
QUALIFY row_number() OVER (
  PARTITION BY landing_seq, commodity_code, country_code, market_year, attribute_id
  ORDER BY calendar_year DESC, month DESC
) = 1
