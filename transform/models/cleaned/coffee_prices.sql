-- The current price of every month and series: the newest landing file's (FRED revises past
-- months now and then; a month the newest file no longer lists keeps its last known value).
MODEL (
  name cleaned.coffee_prices,
  kind FULL,
  grain (month, series),
  audits (
    unique_combination_of_columns(columns := (month, series)),
    not_null(columns := (month, series, landing_sha256))
  ),
  description 'Latest value per (month, series) with its landing file; value NULL when upstream has none'
);

SELECT
  month,
  series,
  value,
  landing_seq,
  landing_sha256
FROM staging.prices
QUALIFY row_number() OVER (PARTITION BY month, series ORDER BY landing_seq DESC) = 1
