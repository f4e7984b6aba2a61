-- The latest value of every key: its current range in the history (the value as of the latest
-- release), unless the latest release removed it.
MODEL (
  name cleaned.psd_latest,
  kind VIEW,
  grain (commodity_code, country_code, market_year, attribute_id),
  description 'Latest value per (commodity, country, market year, attribute) with the landing file that brought it'
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
  sequence,
  landing_sha256,
  -- psd_history names the history's landing files and build (config.py). The history changes
  -- outside SQLMesh, so each new file (or full rebuild) must make a new version of this view,
  -- a breaking one (a changed projection, not a filter SQLMesh folds away), so that the plan
  -- rebuilds the tables on top of it in the same cycle.
  @VAR('psd_history', '') AS history_build
FROM history.psd_value_history
WHERE valid_to_release IS NULL
  AND NOT removed
