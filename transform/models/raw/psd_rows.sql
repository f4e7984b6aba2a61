-- Every row of the landing files this cycle reads (the `psd_stage_files` variable: the new
-- files of an incremental cycle, every file of a full rebuild), as text, exactly as upstream
-- wrote it. A view (free until read); the transform's history step (history.py) renders it,
-- staging.psd and staging.psd_keys into one query that it runs once per cycle. These three are
-- views, not EMBEDDED: SQLMesh 0.236 mangles read_csv's `columns` struct when it inlines this
-- query into an embedded model.
-- Explicit CSV options: nothing is sniffed, so codes keep their leading zeros ('0711100',
-- '028'), 'NA' (Netherlands Antilles) stays a country code, an empty field is NULL. CRLF and
-- LF line ends are both read; do not set new_line: in SQL '\r\n' is four characters, and
-- DuckDB 1.5 then silently reads zero rows.
-- landing_row is the scan's ordinal (WITH ORDINALITY): within one landing file it increases in
-- file order (the first data row has the smallest), so it says which of two rows of a file
-- came later. Across files, and as an absolute number, it means nothing.
MODEL (
  name raw.psd_rows,
  kind VIEW,
  description 'PSD bulk CSV rows of the staged landing files, untyped; landing_seq orders the files (1 = oldest), landing_row the rows within a file'
);

SELECT
  Commodity_Code,
  Commodity_Description,
  Country_Code,
  Country_Name,
  Market_Year,
  Calendar_Year,
  Month,
  Attribute_ID,
  Attribute_Description,
  Unit_ID,
  Unit_Description,
  Value,
  list_position(@landing_file_list(@VAR('psd_stage_files')), filename) AS landing_seq,
  regexp_extract(filename, '([0-9a-f]{64})\.csv\.gzip$', 1) AS landing_sha256,
  ordinality AS landing_row
FROM read_csv(
  @landing_file_list(@VAR('psd_stage_files')),
  header = TRUE,
  auto_detect = FALSE,
  delim = ',',
  quote = '"',
  escape = '"',
  compression = 'gzip',
  filename = TRUE,
  strict_mode = TRUE,
  null_padding = FALSE,
  nullstr = '',
  columns = {
    'Commodity_Code': 'VARCHAR',
    'Commodity_Description': 'VARCHAR',
    'Country_Code': 'VARCHAR',
    'Country_Name': 'VARCHAR',
    'Market_Year': 'VARCHAR',
    'Calendar_Year': 'VARCHAR',
    'Month': 'VARCHAR',
    'Attribute_ID': 'VARCHAR',
    'Attribute_Description': 'VARCHAR',
    'Unit_ID': 'VARCHAR',
    'Unit_Description': 'VARCHAR',
    'Value': 'VARCHAR'
  }
) WITH ORDINALITY
