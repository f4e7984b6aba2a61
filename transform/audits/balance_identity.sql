-- total_supply = beginning_stocks + production + imports, where all are present. Not blocking:
-- upstream data may break it; the transform step counts violations and reports them.
AUDIT (
  name balance_identity,
  blocking FALSE
);

SELECT *
FROM @this_model
WHERE total_supply IS NOT NULL
  AND beginning_stocks IS NOT NULL
  AND production IS NOT NULL
  AND abs(total_supply - (beginning_stocks + production + coalesce(imports, 0))) > 0.5
