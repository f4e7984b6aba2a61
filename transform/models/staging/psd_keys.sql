-- The value of every key in every staged landing file: what the history step compares with
-- the current values (history.psd_changes), one file at a time.
-- Within one file a key should appear once. Should upstream repeat it, one row is kept: the one
-- with the greatest (Calendar_Year, Month), and among those the last in file order (greatest
-- landing_row). key_rows counts the file's rows of the key (1 unless repeated), so the key_rows
-- of a file's kept rows add up to every row read from it: the history step checks that sum
-- against the rows the ledger recorded when the file landed, before it commits anything.
-- A view: the history step runs it once over the staged files.
MODEL (
  name staging.psd_keys,
  kind VIEW,
  grain (landing_seq, commodity_code, country_code, market_year, attribute_id),
  description 'One row per staged landing file and (commodity, country, market year, attribute)'
);

-- One pass of a hash aggregate (faster than a window sorted per key): arg_max takes the kept
-- row's columns by (calendar_year, month, landing_row), unique within a file.
WITH kept AS (
  SELECT
    landing_seq,
    commodity_code,
    country_code,
    market_year,
    attribute_id,
    arg_max(
      struct_pack(commodity, country, attribute, unit_id, unit, calendar_year, month, value, landing_sha256),
      struct_pack(calendar_year, month, landing_row)
    ) AS kept_row,
    count(*) AS key_rows
  FROM staging.psd
  GROUP BY landing_seq, commodity_code, country_code, market_year, attribute_id
)
SELECT
  commodity_code,
  kept_row.commodity AS commodity,
  country_code,
  kept_row.country AS country,
  market_year,
  attribute_id,
  kept_row.attribute AS attribute,
  kept_row.unit_id AS unit_id,
  kept_row.unit AS unit,
  kept_row.calendar_year AS calendar_year,
  kept_row.month AS month,
  kept_row.value AS value,
  landing_seq,
  kept_row.landing_sha256 AS landing_sha256,
  key_rows
FROM kept
