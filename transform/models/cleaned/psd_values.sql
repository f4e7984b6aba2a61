-- The value of every key in every landing snapshot: the history that revisions are read from.
-- Within one snapshot a key should appear once. Should upstream repeat it, one row is kept:
-- the one with the greatest (Calendar_Year, Month), and among those the last in file order
-- (greatest landing_row). key_rows counts the file's rows of the key (1 unless repeated), so
-- the key_rows of a file's kept rows add up to every row read from it: the transform step
-- checks that sum against the rows the ledger recorded when the file landed.
MODEL (
  name cleaned.psd_values,
  kind FULL,
  grain (landing_seq, commodity_code, country_code, market_year, attribute_id),
  audits (
    number_of_rows(threshold := 1),
    unique_combination_of_columns(columns := (landing_seq, commodity_code, country_code, market_year, attribute_id)),
    not_null(columns := (landing_seq, landing_sha256, commodity_code, country_code, market_year, attribute_id, calendar_year, month, key_rows))
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
  landing_sha256,
  count(*) OVER (
    PARTITION BY landing_seq, commodity_code, country_code, market_year, attribute_id
    ORDER BY calendar_year DESC, month DESC, landing_row DESC
    ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
  ) AS key_rows
FROM staging.psd
QUALIFY row_number() OVER (
  PARTITION BY landing_seq, commodity_code, country_code, market_year, attribute_id
  ORDER BY calendar_year DESC, month DESC, landing_row DESC
) = 1
