-- One row each time a release changed a value: the history of USDA's estimates, read from the
-- history's ranges that revise a value (history.psd_changes says which). A key first seen in a
-- release is not a revision, nor is its removal; a value that changes back is one, and so is a
-- key back after a removal with another value than its last. Two files of one release count as
-- that release's final state (the later landed). revised_in is the release.
-- A VIEW: it costs nothing in the transform; export-serving materialises it. As of the last
-- file this version was planned with, as serving.value_history.
MODEL (
  name serving.estimate_revisions,
  kind VIEW,
  grain (commodity_code, country_code, market_year, attribute_id, revised_in),
  description 'Each change of a value between consecutive releases'
);

SELECT
  commodity_code::TEXT AS commodity_code,
  commodity::TEXT AS commodity,
  country_code::TEXT AS country_code,
  country::TEXT AS country,
  market_year::INTEGER AS market_year,
  attribute_id::TEXT AS attribute_id,
  attribute::TEXT AS attribute,
  unit::TEXT AS unit,
  valid_from_release::TEXT AS revised_in,
  previous_value::DOUBLE AS previous_value,
  value::DOUBLE AS value,
  (value - previous_value)::DOUBLE AS change,
  landing_sha256::TEXT AS landing_sha256
FROM history.psd_value_history
WHERE revision
  AND sequence <= @VAR('psd_built_sequence', 2147483647)
