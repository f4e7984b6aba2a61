//! Formatting that pages and the API share: numbers in their exact shortest form (`ryu`, as
//! serde_json writes them), numbers for people, marketing-year labels, and CSV.
//!
//! CSV cells are neutralised as OWASP recommends against formula injection: a text cell that
//! begins with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so a
//! spreadsheet shows it as text instead of running it. Numbers are written as numbers (a
//! negative change stays `-12.5`): only text from the data goes through [`Csv::text`].

use std::fmt::Write as _;

/// A value as the answers carry it: `None` for NULL (NaN in the prepared data).
pub fn value(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The shortest text that reads back as the same `f64`; empty for NULL.
pub fn plain_number(v: f64) -> String {
    value(v).map_or_else(String::new, |v| {
        ryu::Buffer::new().format_finite(v).to_owned()
    })
}

/// The USDA label of a marketing year that begins in `year`: `2023` is `"2023/24"`.
pub fn marketing_year(year: i32) -> String {
    format!("{year}/{:02}", (year + 1).rem_euclid(100))
}

/// The unit a client asked for (`?unit=`): PSD's own, or metric tons for 60-kg bags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitChoice {
    Native,
    /// 60-kg bags become metric tons at the same scale: `(1000 60 KG BAGS)` is `(1000 MT)`,
    /// a value x 0.06 (1 bag = 60 kg = 0.06 t). Other units are unchanged.
    Mt,
}

/// Kilograms per bag over kilograms per ton: exact as a decimal, and in `f64` the product
/// `value * 0.06` is the one DuckDB computes for the same expression.
pub const BAG_TO_MT: f64 = 0.06;
const BAGS: &str = "60 KG BAGS";

impl UnitChoice {
    pub fn name(self) -> &'static str {
        match self {
            UnitChoice::Native => "native",
            UnitChoice::Mt => "mt",
        }
    }

    /// The label of `unit` in this choice and the factor its values are multiplied by.
    pub fn convert(self, unit: &str) -> (String, f64) {
        match self {
            UnitChoice::Mt if unit.to_ascii_uppercase().contains(BAGS) => {
                let at = unit.to_ascii_uppercase().find(BAGS).unwrap_or(0);
                let label = format!("{}MT{}", &unit[..at], &unit[at + BAGS.len()..]);
                (label, BAG_TO_MT)
            }
            _ => (unit.to_owned(), 1.0),
        }
    }
}

/// The eight quantities of a row times `factor`; stocks-to-use (a ratio) unchanged.
pub fn scaled(m: &[f64; 9], factor: f64) -> [f64; 9] {
    if factor == 1.0 {
        return *m;
    }
    let mut out = *m;
    for v in out.iter_mut().take(8) {
        *v *= factor;
    }
    out
}

/// `1234567.0` as `1,234,567`; fractions keep two decimals; NULL as an en dash.
pub fn grouped(v: Option<f64>) -> String {
    let Some(v) = v else {
        return "–".to_owned();
    };
    let text = if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    };
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let mut out = String::with_capacity(int.len() + int.len() / 3 + 4);
    out.push_str(sign);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// A ratio as a percentage with one decimal, `–` for NULL.
pub fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

/// A CSV document: a header row, then rows of cells, `\r\n` after each row (RFC 4180).
pub struct Csv {
    out: String,
    first: bool,
}

impl Csv {
    pub fn new(header: &[&str]) -> Csv {
        let mut csv = Csv {
            out: String::with_capacity(4096),
            first: true,
        };
        for name in header {
            csv.text(name);
        }
        csv.end_row();
        csv
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
    }

    /// A text cell: neutralised when a spreadsheet would read it as a formula, quoted when
    /// it holds a separator, a quote or a line break.
    pub fn text(&mut self, s: &str) {
        self.sep();
        let guard = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
        if guard || s.contains([',', '"', '\n', '\r']) {
            self.out.push('"');
            if guard {
                self.out.push('\'');
            }
            self.out.push_str(&s.replace('"', "\"\""));
            self.out.push('"');
        } else {
            self.out.push_str(s);
        }
    }

    /// A number cell, empty for NULL.
    pub fn number(&mut self, v: f64) {
        self.sep();
        if let Some(v) = value(v) {
            self.out.push_str(ryu::Buffer::new().format_finite(v));
        }
    }

    pub fn int(&mut self, v: impl std::fmt::Display) {
        self.sep();
        let _ = write!(self.out, "{v}");
    }

    pub fn opt_int(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.int(v),
            None => self.sep(),
        }
    }

    pub fn end_row(&mut self) {
        self.out.push_str("\r\n");
        self.first = true;
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_back_exactly() {
        for v in [0.0, 170000.0, 0.1 + 0.2, 1e21, -3.5e-7, 123456789.123] {
            let s = plain_number(v);
            let back: f64 = serde_json::from_str(&s).unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{s}");
            // serde_json (the API) writes the same value, its exponent as `1e+21`.
            let api: f64 = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
            assert_eq!(api.to_bits(), v.to_bits());
        }
        assert_eq!(plain_number(f64::NAN), "");
        assert_eq!(value(f64::INFINITY), None);
    }

    #[test]
    fn bags_become_metric_tons_at_the_same_scale_and_other_units_stay() {
        assert_eq!(
            UnitChoice::Mt.convert("(1000 60 KG BAGS)"),
            ("(1000 MT)".to_owned(), 0.06)
        );
        assert_eq!(
            UnitChoice::Mt.convert("(1000 MT)"),
            ("(1000 MT)".to_owned(), 1.0)
        );
        assert_eq!(
            UnitChoice::Native.convert("(1000 60 KG BAGS)"),
            ("(1000 60 KG BAGS)".to_owned(), 1.0)
        );
        let m = scaled(
            &[1000.0, 2.0, 0.0, 3.0, 4.0, 5.0, 6.0, f64::NAN, 0.25],
            0.06,
        );
        assert_eq!(m[0], 1000.0 * 0.06);
        assert!(m[7].is_nan());
        assert_eq!(m[8], 0.25, "a ratio is not converted");
    }

    #[test]
    fn marketing_years_are_labelled_as_usda_does() {
        assert_eq!(marketing_year(2023), "2023/24");
        assert_eq!(marketing_year(1999), "1999/00");
        assert_eq!(marketing_year(2009), "2009/10");
    }

    #[test]
    fn numbers_are_grouped_for_people() {
        assert_eq!(grouped(Some(1234567.0)), "1,234,567");
        assert_eq!(grouped(Some(-1234.5)), "-1,234.50");
        assert_eq!(grouped(Some(12.0)), "12");
        assert_eq!(grouped(Some(0.25)), "0.25");
        assert_eq!(grouped(None), "–");
        assert_eq!(percent(Some(0.2345)), "23.4%");
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut csv = Csv::new(&["a", "b", "c"]);
        csv.text("Korea, South");
        csv.text("plain");
        csv.text("say \"hi\"");
        csv.end_row();
        assert_eq!(
            csv.finish(),
            "a,b,c\r\n\"Korea, South\",plain,\"say \"\"hi\"\"\"\r\n"
        );
    }

    #[test]
    fn csv_formula_cells_are_neutralised_and_numbers_stay_numbers() {
        let mut csv = Csv::new(&["x"]);
        for cell in [
            "=HYPERLINK(\"http://x\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\tTab",
            "\rCR",
            "a=b",
        ] {
            csv.text(cell);
        }
        csv.number(-12.5);
        csv.number(f64::NAN);
        csv.end_row();
        assert_eq!(
            csv.finish(),
            "x\r\n\"'=HYPERLINK(\"\"http://x\"\")\",\"'+1+1\",\"'-2+3\",\"'@SUM(A1)\",\"'\tTab\",\"'\rCR\",a=b,-12.5,\r\n"
        );
    }
}
