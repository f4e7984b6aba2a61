-- The releases in the history, oldest first, each with the landing file that is its final state
-- (of two files stamped with one release, the later landed).
MODEL (
  name serving.releases,
  kind VIEW,
  grain (release),
  description 'Each release built, with its landing file'
);

SELECT
  release::TEXT AS release,
  landing_sha256::TEXT AS landing_sha256,
  sequence::INTEGER AS sequence,
  rows_read::BIGINT AS rows_read,
  changes::BIGINT AS changes
FROM history.psd_files
WHERE NOT superseded
  AND sequence <= @VAR('psd_built_sequence', 2147483647)
