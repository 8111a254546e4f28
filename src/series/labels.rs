//! Label sets: sorted `(name, value)` pairs stored in one allocation.
//!
//! A series' identity is its sorted label set. Storing it as one string, each name and value
//! prefixed by its length, keeps 100k series cheap (one allocation of about the labels' own bytes
//! each, where separate strings cost an allocation and 16 to 24 bytes of header apiece) and makes
//! equality and hashing plain byte operations; the order PromQL's label-ordered aggregation needs
//! compares pair by pair.

use std::fmt;
use std::hash::{Hash, Hasher};

pub(crate) const METRIC_NAME: &str = "__name__";

/// A sorted, duplicate-free label set. Build one with [`Labels::from_pairs`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Labels {
    /// name0 value0 name1 value1 ..., each string preceded by its length in 6-bit groups, least
    /// significant first, one ASCII byte each (`0x40` set on every group but the last): the
    /// lengths are ASCII, so the whole stays a `str` that is sliced without re-validating, and a
    /// name or value shorter than 64 bytes costs one byte of length.
    buf: Box<str>,
    pairs: u32,
}

/// Appends `n` as [`Labels::buf`] encodes lengths.
fn push_len(buf: &mut String, mut n: usize) {
    while n >= 64 {
        buf.push(char::from(0x40 | (n & 63) as u8));
        n >>= 6;
    }
    buf.push(char::from(n as u8));
}

/// The strings of a [`Labels::buf`] in order.
struct Strings<'a> {
    buf: &'a str,
    pos: usize,
}

impl<'a> Iterator for Strings<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.buf.as_bytes();
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let b = *bytes.get(self.pos)?;
            self.pos += 1;
            len |= usize::from(b & 63) << shift;
            if b & 0x40 == 0 {
                break;
            }
            shift += 6;
        }
        let s = self.buf.get(self.pos..self.pos + len)?;
        self.pos += len;
        Some(s)
    }
}

impl Labels {
    /// Builds a label set from pairs in any order. Pairs are sorted by name; the caller has
    /// already rejected duplicates and empty names (ingest validates before building).
    pub fn from_pairs<'a, I>(pairs: I) -> Labels
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut v: Vec<(&str, &str)> = pairs.into_iter().collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        Self::from_sorted(&v)
    }

    /// Builds from pairs already sorted by name.
    pub(crate) fn from_sorted(pairs: &[(&str, &str)]) -> Labels {
        let mut buf = String::new();
        Labels::encode(pairs, &mut buf);
        // `encode` reserved the exact length: the buffer becomes the label set without a copy.
        Labels {
            buf: buf.into_boxed_str(),
            pairs: pairs.len() as u32,
        }
    }

    /// Writes pairs sorted by name into `buf` (cleared first) as a label set holds them: equal
    /// label sets, and only they, encode to equal strings, so the encoding is a key to compare
    /// and hash whole.
    pub(crate) fn encode(pairs: &[(&str, &str)], buf: &mut String) {
        buf.clear();
        buf.reserve(pairs.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
        for (n, v) in pairs {
            push_len(buf, n.len());
            buf.push_str(n);
            push_len(buf, v.len());
            buf.push_str(v);
        }
    }

    /// The label set of `pairs` pairs that [`Labels::encode`] wrote into `encoded`.
    pub(crate) fn from_encoded(encoded: &str, pairs: usize) -> Labels {
        Labels {
            buf: encoded.into(),
            pairs: pairs as u32,
        }
    }

    /// The label set as [`Labels::encode`] writes it.
    pub(crate) fn encoded(&self) -> &str {
        &self.buf
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pairs as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pairs == 0
    }

    /// The pairs in name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let mut strings = Strings {
            buf: &self.buf,
            pos: 0,
        };
        std::iter::from_fn(move || Some((strings.next()?, strings.next()?)))
    }

    /// The value of label `name`, if present.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        // label sets are small: a linear scan beats a binary search's branches
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The metric name, `""` when absent.
    pub(crate) fn metric_name(&self) -> &str {
        self.get(METRIC_NAME).unwrap_or("")
    }

    /// A new label set keeping only the labels for which `keep` is true.
    pub(crate) fn filter(&self, mut keep: impl FnMut(&str) -> bool) -> Labels {
        let pairs: Vec<(&str, &str)> = self.iter().filter(|(n, _)| keep(n)).collect();
        Labels::from_sorted(&pairs)
    }
}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.buf.hash(state);
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    /// Prometheus's label-set order: pairwise by name, then value.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let mut a = self.iter();
        let mut b = other.iter();
        loop {
            match (a.next(), b.next()) {
                (None, None) => return std::cmp::Ordering::Equal,
                (None, Some(_)) => return std::cmp::Ordering::Less,
                (Some(_), None) => return std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => match x.0.cmp(y.0).then(x.1.cmp(y.1)) {
                    std::cmp::Ordering::Equal => continue,
                    o => return o,
                },
            }
        }
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_lookup_and_order() {
        let a = Labels::from_pairs([("job", "x"), ("__name__", "up"), ("instance", "a")]);
        assert_eq!(
            a.iter().map(|p| p.0).collect::<Vec<_>>(),
            ["__name__", "instance", "job"]
        );
        assert_eq!(a.get("job"), Some("x"));
        assert_eq!(a.metric_name(), "up");
        assert_eq!(a.get("nope"), None);
        let b = Labels::from_pairs([("job", "x"), ("__name__", "up"), ("instance", "b")]);
        assert!(a < b);
        assert_eq!(a.filter(|n| n != METRIC_NAME).len(), 2);
    }

    #[test]
    fn empty_values_and_unicode_round_trip() {
        let a = Labels::from_pairs([("a", ""), ("b", "ü\"\n")]);
        assert_eq!(a.get("a"), Some(""));
        assert_eq!(a.get("b"), Some("ü\"\n"));
    }

    #[test]
    fn lengths_across_the_one_byte_limit_round_trip() {
        // 63 bytes take one length byte, 64 two, 4,096 three; 2 KiB is the ingest limit.
        for n in [0, 1, 63, 64, 65, 2048, 4095, 4096, 70_000] {
            let name = "n".repeat(n.max(1));
            let value = "ü".repeat(n / 2) + &"v".repeat(n % 2);
            let l = Labels::from_pairs([(name.as_str(), value.as_str()), ("z", "1")]);
            let back: Vec<(&str, &str)> = l.iter().collect();
            assert_eq!(back, [(name.as_str(), value.as_str()), ("z", "1")], "{n}");
            assert_eq!(l.len(), 2);
        }
        // Distinct label sets never share an encoding, so equality and hashing stay exact.
        let a = Labels::from_pairs([("a", "bc")]);
        let b = Labels::from_pairs([("ab", "c")]);
        assert_ne!(a, b);
    }
}
