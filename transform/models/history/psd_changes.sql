-- The change set of one landing file: its kept rows (history.psd_incoming, stamped with the
-- file's release and sequence) against every key's current range in the history, by a hash
-- join on the key. One row per new range:
--   a new key (no range yet);
--   a changed value, or changed labels (commodity, country, attribute or unit names);
--   a removed key: current and present, but not in this file (value NULL, removed TRUE);
--   a key back after a removal (whatever its value).
-- An unchanged value (the same value and labels; the Calendar_Year/Month stamp may differ)
-- makes no row. revision says whether the value differs from the key's last present value
-- (previous_value): a new key and a removal are not revisions; a value that changes back is one.
-- The history step renders it, closes the ranges these rows replace (valid_to_release = this
-- release) and appends them. A view in the lakehouse that nothing else reads (not EMBEDDED:
-- SQLMesh 0.236 then mangles read_csv's `columns` struct in raw.psd_rows).
MODEL (
  name history.psd_changes,
  kind VIEW,
  grain (commodity_code, country_code, market_year, attribute_id),
  description 'New history ranges from one landing file: new keys, changed values, removed keys'
);

WITH current AS (
  SELECT *
  FROM history.psd_value_history
  WHERE valid_to_release IS NULL
), file AS (
  SELECT
    any_value(release) AS release,
    any_value(sequence) AS sequence,
    any_value(landing_sha256) AS landing_sha256
  FROM history.psd_incoming
)
SELECT
  coalesce(i.commodity_code, c.commodity_code)::TEXT AS commodity_code,
  coalesce(i.country_code, c.country_code)::TEXT AS country_code,
  coalesce(i.market_year, c.market_year)::INTEGER AS market_year,
  coalesce(i.attribute_id, c.attribute_id)::TEXT AS attribute_id,
  i.value::DOUBLE AS value,
  f.release::TEXT AS valid_from_release,
  NULL::TEXT AS valid_to_release,
  f.landing_sha256::TEXT AS landing_sha256,
  f.sequence::INTEGER AS sequence,
  (i.commodity_code IS NULL)::BOOLEAN AS removed,
  (
    i.commodity_code IS NOT NULL
    AND c.commodity_code IS NOT NULL
    AND i.value IS DISTINCT FROM CASE WHEN c.removed THEN c.previous_value ELSE c.value END
  )::BOOLEAN AS revision,
  (CASE WHEN c.removed THEN c.previous_value ELSE c.value END)::DOUBLE AS previous_value,
  coalesce(i.commodity, c.commodity)::TEXT AS commodity,
  coalesce(i.country, c.country)::TEXT AS country,
  coalesce(i.attribute, c.attribute)::TEXT AS attribute,
  (CASE WHEN i.commodity_code IS NULL THEN c.unit_id ELSE i.unit_id END)::TEXT AS unit_id,
  (CASE WHEN i.commodity_code IS NULL THEN c.unit ELSE i.unit END)::TEXT AS unit,
  i.calendar_year::INTEGER AS calendar_year,
  i.month::INTEGER AS month
FROM history.psd_incoming AS i
FULL JOIN current AS c
  ON i.commodity_code = c.commodity_code
  AND i.country_code = c.country_code
  AND i.market_year = c.market_year
  AND i.attribute_id = c.attribute_id
CROSS JOIN file AS f
WHERE
  c.commodity_code IS NULL
  OR (i.commodity_code IS NULL AND NOT c.removed)
  OR (
    i.commodity_code IS NOT NULL
    AND (
      c.removed
      OR i.value IS DISTINCT FROM c.value
      OR i.commodity IS DISTINCT FROM c.commodity
      OR i.country IS DISTINCT FROM c.country
      OR i.attribute IS DISTINCT FROM c.attribute
      OR i.unit_id IS DISTINCT FROM c.unit_id
      OR i.unit IS DISTINCT FROM c.unit
    )
  )
