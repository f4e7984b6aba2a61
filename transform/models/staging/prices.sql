-- One row per month, series and landing file: each data line split by its file's header. A
-- missing value (empty, or `.` in older files) is NULL. The BOM and a CR before the line end,
-- which extract-prices accepts, are dropped.
MODEL (
  name staging.prices,
  kind VIEW,
  description 'Monthly prices per series and landing file, typed: month DATE, value DOUBLE (NULL when missing)'
);

WITH lines AS (
  SELECT
    rtrim(ltrim(line, chr(65279)), chr(13)) AS line,
    landing_seq,
    landing_sha256,
    row_number() OVER (PARTITION BY landing_seq ORDER BY landing_row) AS line_no
  FROM raw.prices_lines
),
headers AS (
  SELECT landing_seq, string_split(line, ',') AS names
  FROM lines
  WHERE line_no = 1
),
fields AS (
  SELECT
    l.landing_seq,
    l.landing_sha256,
    h.names,
    string_split(l.line, ',') AS cells
  FROM lines AS l
  JOIN headers AS h
    ON h.landing_seq = l.landing_seq
  WHERE l.line_no > 1
),
cells AS (
  SELECT
    landing_seq,
    landing_sha256,
    cells[1] AS observation_date,
    names[i] AS series,
    cells[i] AS value_text
  FROM fields, range(2, len(names) + 1) AS t(i)
)
SELECT
  observation_date::DATE AS month,
  series::TEXT AS series,
  CASE WHEN value_text IN ('', '.') THEN NULL ELSE value_text::DOUBLE END AS value,
  landing_seq::INTEGER AS landing_seq,
  landing_sha256::TEXT AS landing_sha256
FROM cells
