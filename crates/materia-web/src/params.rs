//! The request's path and query, checked: percent-decoding, codes, market years, `limit`,
//! `format`. Malformed or out-of-range text is a 400 [`Problem`] that quotes at most 40
//! characters of it.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::api::Format;
use crate::format::UnitChoice;
use crate::limits;
use crate::reply::Problem;

/// The path's segments, percent-decoded; `/` is one empty segment.
pub fn segments(path: &str) -> Result<Vec<String>, Problem> {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split('/')
        .map(|s| {
            percent_decode(s)
                .ok_or_else(|| Problem::bad("the path is not valid percent-encoded UTF-8"))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Query parameters; a name given twice is malformed.
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Result<Query, Problem> {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let k: Cow<'_, str> = k;
            if map.insert(k.clone().into_owned(), v.into_owned()).is_some() {
                return Err(Problem::bad(format!(
                    "parameter {k} is given more than once"
                )));
            }
        }
        Ok(Query(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A parameter that pages submit empty for "all": empty is absent.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    pub fn format(&self) -> Result<Format, Problem> {
        match self.get("format") {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(Problem::bad(format!(
                "format must be json or csv, not {:?}",
                truncate(other)
            ))),
        }
    }

    /// `unit=native|mt` (default native).
    pub fn unit(&self) -> Result<UnitChoice, Problem> {
        match self.non_empty("unit") {
            None | Some("native") => Ok(UnitChoice::Native),
            Some("mt") => Ok(UnitChoice::Mt),
            Some(other) => Err(Problem::bad(format!(
                "unit must be native or mt, not {:?}",
                truncate(other)
            ))),
        }
    }

    pub fn required(&self, name: &str) -> Result<&str, Problem> {
        self.get(name)
            .ok_or_else(|| Problem::bad(format!("parameter {name} is required")))
    }

    pub fn limit(&self) -> Result<usize, Problem> {
        match self.get("limit") {
            None => Ok(limits::REVISIONS_LIMIT_DEFAULT),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=limits::REVISIONS_LIMIT_MAX).contains(n))
                .ok_or_else(|| {
                    Problem::bad(format!(
                        "limit must be a whole number from 1 to {}, not {:?}",
                        limits::REVISIONS_LIMIT_MAX,
                        truncate(text)
                    ))
                }),
        }
    }

    /// `name=YYYY-MM`, a release month, if given.
    pub fn release(&self, name: &str) -> Result<Option<&str>, Problem> {
        self.non_empty(name)
            .map(|t| {
                let b = t.as_bytes();
                let ok = b.len() == 7
                    && b[4] == b'-'
                    && b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit)
                    && matches!(
                        &t[5..],
                        "01" | "02"
                            | "03"
                            | "04"
                            | "05"
                            | "06"
                            | "07"
                            | "08"
                            | "09"
                            | "10"
                            | "11"
                            | "12"
                    );
                if ok {
                    Ok(t)
                } else {
                    Err(Problem::bad(format!(
                        "{name} must be a release month YYYY-MM, not {:?}",
                        truncate(t)
                    )))
                }
            })
            .transpose()
    }

    pub fn market_year(&self) -> Result<Option<i32>, Problem> {
        self.get("market_year").map(market_year).transpose()
    }
}

/// At most 40 characters of request text in a message.
pub fn truncate(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// A commodity or country code: 1 to 16 ASCII letters or digits.
pub fn code<'a>(what: &str, text: &'a str) -> Result<&'a str, Problem> {
    let ok = !text.is_empty()
        && text.len() <= limits::CODE_CHARS_MAX
        && text.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(text)
    } else {
        Err(Problem::bad(format!(
            "{what} must be a code of 1 to {} letters or digits, not {:?}",
            limits::CODE_CHARS_MAX,
            truncate(text)
        )))
    }
}

pub fn market_year(text: &str) -> Result<i32, Problem> {
    text.parse::<i32>()
        .ok()
        .filter(|y| (limits::MARKET_YEAR_MIN..=limits::MARKET_YEAR_MAX).contains(y))
        .ok_or_else(|| {
            Problem::bad(format!(
                "market_year must be a year from {} to {}, not {:?}",
                limits::MARKET_YEAR_MIN,
                limits::MARKET_YEAR_MAX,
                truncate(text)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn codes_and_years_are_checked() {
        assert!(code("commodity", "0711100").is_ok());
        assert!(code("country", "NA").is_ok());
        for bad in ["", "07 11", "x'; DROP TABLE", "ä", "12345678901234567"] {
            assert_eq!(
                code("commodity", bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
        assert_eq!(market_year("2024").unwrap(), 2024);
        for bad in ["1899", "2101", "20x4", "", "99999999999"] {
            assert!(market_year(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_percent_decoded_and_bad_encodings_refused() {
        assert_eq!(segments("/").unwrap(), vec![""]);
        assert_eq!(
            segments("/commodity/%30711100").unwrap(),
            vec!["commodity", "0711100"]
        );
        assert!(segments("/x/%zz").is_err());
        assert!(segments("/x/%ff").is_err());
        assert_eq!(
            segments("/static/..%2F..%2Fetc").unwrap(),
            vec!["static", "../../etc"]
        );
    }

    #[test]
    fn a_parameter_given_twice_is_malformed() {
        assert!(Query::parse(Some("commodity=1&commodity=2")).is_err());
        let q = Query::parse(Some("commodity=0711100&country=NA")).unwrap();
        assert_eq!(q.get("country"), Some("NA"));
        assert!(Query::parse(Some("format=xml")).unwrap().format().is_err());
        assert!(Query::parse(Some("limit=0")).unwrap().limit().is_err());
        assert!(Query::parse(Some("limit=10001")).unwrap().limit().is_err());
        assert_eq!(Query::parse(None).unwrap().limit().unwrap(), 100);
        assert_eq!(
            Query::parse(Some("unit=mt")).unwrap().unit().unwrap(),
            UnitChoice::Mt
        );
        assert_eq!(
            Query::parse(None).unwrap().unit().unwrap(),
            UnitChoice::Native
        );
        assert!(Query::parse(Some("unit=kg")).unwrap().unit().is_err());
        let q = Query::parse(Some("release=2026-02")).unwrap();
        assert_eq!(q.release("release").unwrap(), Some("2026-02"));
        for bad in ["2026-13", "2026-2", "26-02", "2026/02", "abcd-ef"] {
            let q = Query::parse(Some(&format!("release={bad}"))).unwrap();
            assert!(q.release("release").is_err(), "{bad}");
        }
    }
}
