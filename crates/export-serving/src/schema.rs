//! What a schema holds (tables, their kind and columns), and which changes break readers.

use std::collections::BTreeMap;

use lakehouse::duckdb::Connection;

/// One table or view with its columns in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// `BASE TABLE` or `VIEW`.
    pub kind: String,
    /// (column name, data type) in ordinal order.
    pub columns: Vec<(String, String)>,
}

/// The relations of one schema, by name.
pub type Catalogue = BTreeMap<String, Relation>;

/// Accepts a plain SQL identifier (letters, digits, underscore; not starting with a digit):
/// names are spliced into SQL, quoted, and must not need more than that.
pub fn parse_identifier(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a plain identifier (letters, digits, _; at most 63)"
        ))
    }
}

/// `"name"` with inner quotes doubled.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with inner quotes doubled.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Every relation of `catalog.schema`, except `skip`.
pub fn read(
    conn: &Connection,
    catalog: &str,
    schema: &str,
    skip: &str,
) -> Result<Catalogue, lakehouse::duckdb::Error> {
    let mut out = Catalogue::new();
    let mut stmt = conn.prepare(
        "SELECT table_name, table_type FROM information_schema.tables
          WHERE table_catalog = ? AND table_schema = ? ORDER BY table_name",
    )?;
    let rows = stmt
        .query_map([catalog, schema], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (name, kind) in rows {
        if name != skip {
            out.insert(
                name,
                Relation {
                    kind,
                    columns: Vec::new(),
                },
            );
        }
    }
    let mut stmt = conn.prepare(
        "SELECT table_name, column_name, data_type FROM information_schema.columns
          WHERE table_catalog = ? AND table_schema = ? ORDER BY table_name, ordinal_position",
    )?;
    let rows = stmt
        .query_map([catalog, schema], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (table, column, data_type) in rows {
        if let Some(rel) = out.get_mut(&table) {
            rel.columns.push((column, data_type));
        }
    }
    Ok(out)
}

/// What readers of `published` would lose if `next` replaced it: vanished tables and columns.
/// A changed column type is a warning, not a loss: the column is still there.
pub fn breaking_changes(schema: &str, published: &Catalogue, next: &Catalogue) -> Vec<String> {
    let mut out = Vec::new();
    for (table, old) in published {
        let Some(new) = next.get(table) else {
            out.push(format!("table {schema}.{table} would vanish"));
            continue;
        };
        for (column, _) in &old.columns {
            if !new.columns.iter().any(|(c, _)| c == column) {
                out.push(format!("column {schema}.{table}.{column} would vanish"));
            }
        }
    }
    out
}

/// Columns whose type changes between `published` and `next`, for a warning.
pub fn type_changes(schema: &str, published: &Catalogue, next: &Catalogue) -> Vec<String> {
    let mut out = Vec::new();
    for (table, old) in published {
        let Some(new) = next.get(table) else { continue };
        for (column, old_type) in &old.columns {
            if let Some((_, new_type)) = new.columns.iter().find(|(c, _)| c == column)
                && new_type != old_type
            {
                out.push(format!(
                    "{schema}.{table}.{column}: {old_type} -> {new_type}"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(columns: &[(&str, &str)]) -> Relation {
        Relation {
            kind: "BASE TABLE".into(),
            columns: columns
                .iter()
                .map(|(c, t)| ((*c).to_owned(), (*t).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn vanished_tables_and_columns_break_added_ones_do_not() {
        let published = Catalogue::from([
            ("a".to_owned(), rel(&[("x", "INTEGER"), ("y", "DOUBLE")])),
            ("b".to_owned(), rel(&[("x", "INTEGER")])),
        ]);
        let next = Catalogue::from([
            ("a".to_owned(), rel(&[("x", "BIGINT"), ("z", "DOUBLE")])),
            ("c".to_owned(), rel(&[("x", "INTEGER")])),
        ]);
        assert_eq!(
            breaking_changes("serving", &published, &next),
            vec![
                "column serving.a.y would vanish".to_owned(),
                "table serving.b would vanish".to_owned()
            ]
        );
        assert_eq!(
            type_changes("serving", &published, &next),
            vec!["serving.a.x: INTEGER -> BIGINT".to_owned()]
        );
        assert!(breaking_changes("serving", &next, &next).is_empty());
    }

    #[test]
    fn identifiers_are_plain() {
        assert_eq!(parse_identifier("serving").unwrap(), "serving");
        assert_eq!(parse_identifier("_x1").unwrap(), "_x1");
        for bad in ["", "1x", "a b", "a\"b", "a;drop", "é"] {
            assert!(parse_identifier(bad).is_err(), "{bad}");
        }
    }
}
