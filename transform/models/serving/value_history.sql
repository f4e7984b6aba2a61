-- Every key's value as validity ranges over releases (SCD type 2 by release): the value held
-- from valid_from_release until valid_to_release (exclusive; NULL while current). A key that a
-- release dropped has a range with removed TRUE and value NULL from that release on.
-- The value of every key as of release X (docs/INTERFACES.md, "Reading a past release"):
--   SELECT commodity_code, country_code, market_year, attribute_id, value
--   FROM serving.value_history
--   WHERE valid_from_release <= X AND (valid_to_release IS NULL OR valid_to_release > X)
--     AND NOT removed
-- A VIEW of the history table (history.psd_value_history); export-serving materialises it.
-- It shows the history as of the last file this version was planned with (psd_built_sequence):
-- a cycle killed after the history committed and before the plan switched the views leaves
-- serving as it was (a later file's ranges hidden, the ranges it closed still open).
MODEL (
  name serving.value_history,
  kind VIEW,
  grain (commodity_code, country_code, market_year, attribute_id, valid_from_release),
  description 'History of every key as validity ranges over releases'
);

SELECT
  h.commodity_code::TEXT AS commodity_code,
  h.country_code::TEXT AS country_code,
  h.market_year::INTEGER AS market_year,
  h.attribute_id::TEXT AS attribute_id,
  h.value::DOUBLE AS value,
  h.valid_from_release::TEXT AS valid_from_release,
  (CASE WHEN h.valid_to_release <= b.release THEN h.valid_to_release END)::TEXT AS valid_to_release,
  h.landing_sha256::TEXT AS landing_sha256,
  h.sequence::INTEGER AS sequence,
  h.removed::BOOLEAN AS removed,
  h.revision::BOOLEAN AS revision,
  h.previous_value::DOUBLE AS previous_value,
  h.unit::TEXT AS unit
FROM history.psd_value_history AS h
CROSS JOIN (
  SELECT max(release) AS release
  FROM history.psd_files
  WHERE sequence <= @VAR('psd_built_sequence', 2147483647)
) AS b
WHERE h.sequence <= @VAR('psd_built_sequence', 2147483647)
