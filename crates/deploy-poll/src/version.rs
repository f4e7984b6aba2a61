//! Release tags in version order: `v9` < `v10`, `v1.9.0` < `v1.10.0`, `v2.0.0-rc1` < `v2.0.0`.

use std::cmp::Ordering;

/// A tag split into text and number runs, compared run by run (numbers as numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub tag: String,
    parts: Vec<Part>,
}

/// One run of a tag. Declared in the order runs compare at the same position: a pre-release
/// suffix (`-rc1`, `~beta`) sorts before the end of the tag (`v2.0.0-rc1` < `v2.0.0`), other
/// text after it (`v2.0.0` < `v2.0.0.1`, `v1` < `v1+build`), a number after text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    /// Text starting with `-` or `~`.
    PreRelease(String),
    /// Where the shorter of two tags ended.
    End,
    Text(String),
    /// Digits without leading zeros, compared by length then digit by digit: exact for any
    /// length (a `u64` would saturate and tie numbers that differ).
    Num {
        len: usize,
        digits: String,
    },
}

impl Version {
    pub fn parse(tag: &str) -> Version {
        let mut parts = Vec::new();
        let mut chars = tag.chars().peekable();
        while let Some(&c) = chars.peek() {
            let digit = c.is_ascii_digit();
            let mut run = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_digit() != digit {
                    break;
                }
                run.push(c);
                chars.next();
            }
            parts.push(if digit {
                let digits = run.trim_start_matches('0').to_owned();
                Part::Num {
                    len: digits.len(),
                    digits,
                }
            } else if run.starts_with(['-', '~']) {
                Part::PreRelease(run)
            } else {
                Part::Text(run)
            });
        }
        Version {
            tag: tag.to_owned(),
            parts,
        }
    }
}

/// What a tag holds past its last run, against a longer one.
static END: Part = Part::End;

impl Ord for Version {
    /// Run by run, the shorter tag padded with `End`; equal runs are decided by the tag text
    /// (`v01` against `v1`). A total order: comparing, sorting and picking the newest never
    /// depend on the order git listed the tags in.
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.parts.len().max(other.parts.len());
        fn at(v: &Version, i: usize) -> &Part {
            v.parts.get(i).unwrap_or(&END)
        }
        (0..len)
            .map(|i| at(self, i).cmp(at(other, i)))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| self.tag.cmp(&other.tag))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(tags: &[&str]) -> Vec<String> {
        let mut v: Vec<Version> = tags.iter().map(|t| Version::parse(t)).collect();
        v.sort();
        v.into_iter().map(|v| v.tag).collect()
    }

    #[test]
    fn numbers_compare_as_numbers() {
        assert_eq!(sorted(&["v10", "v9", "v1"]), ["v1", "v9", "v10"]);
        assert_eq!(
            sorted(&["v1.10.0", "v1.9.0", "v1.9.10", "v1.9.2"]),
            ["v1.9.0", "v1.9.2", "v1.9.10", "v1.10.0"]
        );
        assert_eq!(
            sorted(&["v2.0.0", "v2.0.0-rc1", "v2.0.0-rc2", "v1.99"]),
            ["v1.99", "v2.0.0-rc1", "v2.0.0-rc2", "v2.0.0"]
        );
        assert!(Version::parse("v2.0.0.1") > Version::parse("v2.0.0"));
    }

    // Regression (fuzzing, tag_version): a pre-release suffix was older than the end of a tag
    // but compared as plain text against other text, so `v1+` < `v1-` < `v1` < `v1+`: not an
    // order, and sorting may panic or pick a tag that depends on git's listing order.
    #[test]
    fn the_order_is_transitive_across_pre_release_and_other_suffixes() {
        assert_eq!(sorted(&["v1+", "v1", "v1-"]), ["v1-", "v1", "v1+"]);
        assert_eq!(sorted(&["v1", "v1~rc", "v1a"]), ["v1~rc", "v1", "v1a"]);
        let found = String::from_utf8_lossy(include_bytes!(
            "../../../fuzz/regressions/tag_version/order-not-transitive"
        ));
        let tags: Vec<&str> = found.split('\n').collect();
        let mut by_order = sorted(&tags);
        by_order.reverse();
        let mut again: Vec<&str> = by_order.iter().map(String::as_str).collect();
        again.sort_by(|a, b| Version::parse(a).cmp(&Version::parse(b)));
        assert_eq!(
            again,
            sorted(&tags),
            "the same order from any starting order"
        );
    }

    #[test]
    fn numbers_of_any_length_compare_exactly_and_leading_zeros_tie_by_text() {
        assert!(Version::parse("v100000000000000000000") > Version::parse("v99999999999999999999"));
        assert!(Version::parse("v18446744073709551616") > Version::parse("v18446744073709551615"));
        assert_eq!(sorted(&["v1", "v01", "v001"]), ["v001", "v01", "v1"]);
        assert!(Version::parse("v01") != Version::parse("v1"));
    }
}
