-- Monthly coffee prices per series, as served (docs/INTERFACES.md, serving.coffee_prices).
-- The IMF's primary commodity prices are in US cents per pound; a series this table does not
-- know is served with unit NULL rather than a guess.
MODEL (
  name serving.coffee_prices,
  kind FULL,
  grain (month, series),
  audits (
    unique_combination_of_columns(columns := (month, series)),
    not_null(columns := (month, series, value))
  ),
  description 'Monthly coffee prices per FRED series (IMF primary commodity prices) with their unit'
);

WITH units AS (
  SELECT * FROM (
    VALUES
      ('PCOFFOTMUSDM', 'US cents per pound'),
      ('PCOFFROBUSDM', 'US cents per pound')
  ) AS u(series, unit)
)
SELECT
  p.month::DATE AS month,
  p.series::TEXT AS series,
  p.value::DOUBLE AS value,
  u.unit::TEXT AS unit
FROM cleaned.coffee_prices AS p
LEFT JOIN units AS u
  ON u.series = p.series
WHERE p.value IS NOT NULL
ORDER BY p.series, p.month
