-- Every line of every prices landing file (FRED's fredgraph.csv, validated by extract-prices:
-- a header `observation_date,<series>,...`, then `YYYY-MM-01,<value>,...` rows), as text. Lines
-- are read whole because the columns are the configured series: staging splits them by the
-- header. No prices file yet is no rows, never an error (@landing_lines), so that the PSD
-- models never wait for prices.
MODEL (
  name raw.prices_lines,
  kind VIEW,
  description 'Lines of every prices landing file, untyped; landing_seq orders the files (1 = oldest), landing_row the lines within a file'
);

SELECT
  line,
  list_position(@landing_file_list(@VAR('landing_files_prices')), filename) AS landing_seq,
  regexp_extract(filename, '([0-9a-f]{64})\.csv\.gzip$', 1) AS landing_sha256,
  landing_row
FROM @landing_lines(@VAR('landing_files_prices'))
