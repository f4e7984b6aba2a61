-- One row each time a landing snapshot changed a value: the history of USDA's estimates.
-- A key first seen in a snapshot is not a revision; a value that changes back is one.
MODEL (
  name serving.estimate_revisions,
  kind FULL,
  grain (commodity_code, country_code, market_year, attribute_id, revised_in),
  audits (
    unique_combination_of_columns(columns := (commodity_code, country_code, market_year, attribute_id, revised_in)),
    not_null(columns := (commodity_code, country_code, market_year, attribute_id, revised_in, landing_sha256))
  ),
  description 'Each change of a value between consecutive landing snapshots'
);

WITH ordered AS (
  SELECT
    *,
    lag(value) OVER w AS previous_value,
    lag(landing_seq) OVER w AS previous_seq
  FROM cleaned.psd_values
  WINDOW w AS (PARTITION BY commodity_code, country_code, market_year, attribute_id ORDER BY landing_seq)
), changes AS (
  SELECT
    *,
    printf('%04d-%02d', calendar_year, month) AS revised_in
  FROM ordered
  WHERE previous_seq IS NOT NULL AND value IS DISTINCT FROM previous_value
)
SELECT
  commodity_code::TEXT AS commodity_code,
  commodity::TEXT AS commodity,
  country_code::TEXT AS country_code,
  country::TEXT AS country,
  market_year::INTEGER AS market_year,
  attribute_id::TEXT AS attribute_id,
  attribute::TEXT AS attribute,
  unit::TEXT AS unit,
  revised_in::TEXT AS revised_in,
  previous_value::DOUBLE AS previous_value,
  value::DOUBLE AS value,
  (value - previous_value)::DOUBLE AS change,
  landing_sha256::TEXT AS landing_sha256
FROM changes
-- Two snapshots stamped with the same release month: the newer one is the revision.
QUALIFY row_number() OVER (
  PARTITION BY commodity_code, country_code, market_year, attribute_id, revised_in
  ORDER BY landing_seq DESC
) = 1
