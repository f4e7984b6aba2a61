//! Release tags in version order: `v9` < `v10`, `v1.9.0` < `v1.10.0`, `v2.0.0-rc1` < `v2.0.0`.

use std::cmp::Ordering;

/// A tag split into text and number runs, compared run by run (numbers as numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub tag: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Num(u64),
    Text(String),
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
                Part::Num(run.parse().unwrap_or(u64::MAX))
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

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.parts.iter().zip(&other.parts) {
            let o = match (a, b) {
                (Part::Num(x), Part::Num(y)) => x.cmp(y),
                (Part::Text(x), Part::Text(y)) => x.cmp(y),
                // `1.0` vs `1.0-rc1` is decided below; a number beats text here.
                (Part::Num(_), Part::Text(_)) => Ordering::Greater,
                (Part::Text(_), Part::Num(_)) => Ordering::Less,
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        // One is a prefix of the other: `v2.0.0-rc1` extends `v2.0.0` with a pre-release
        // suffix (older); `v2.0.0.1` extends it with a number (newer).
        let (longer, sign) = match self.parts.len().cmp(&other.parts.len()) {
            Ordering::Equal => return self.tag.cmp(&other.tag),
            Ordering::Greater => (&self.parts[other.parts.len()..], Ordering::Greater),
            Ordering::Less => (&other.parts[self.parts.len()..], Ordering::Less),
        };
        let first = &longer[0];
        let pre_release =
            matches!(first, Part::Text(t) if t.starts_with('-') || t.starts_with('~'));
        if pre_release { sign.reverse() } else { sign }
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
}
