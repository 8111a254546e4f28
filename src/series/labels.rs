//! Label sets: sorted `(name, value)` pairs stored in one allocation.
//!
//! A series' identity is its sorted label set. Storing it as one string buffer plus offsets keeps
//! 100k series cheap (one allocation each instead of two per label) and makes equality, hashing
//! and ordering plain byte operations, which is what PromQL's label-ordered aggregation needs.

use std::fmt;
use std::hash::{Hash, Hasher};

pub const METRIC_NAME: &str = "__name__";

/// A sorted, duplicate-free label set. Build one with [`Labels::from_pairs`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Labels {
    /// All names and values back to back: name0 value0 name1 value1 ...
    buf: Box<str>,
    /// End offset of each string in `buf` (2 per label).
    ends: Box<[u32]>,
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
    pub fn from_sorted(pairs: &[(&str, &str)]) -> Labels {
        let len: usize = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
        let mut buf = String::with_capacity(len);
        let mut ends = Vec::with_capacity(pairs.len() * 2);
        for (n, v) in pairs {
            buf.push_str(n);
            ends.push(buf.len() as u32);
            buf.push_str(v);
            ends.push(buf.len() as u32);
        }
        Labels {
            buf: buf.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn str_at(&self, k: usize) -> &str {
        let start = if k == 0 { 0 } else { self.ends[k - 1] as usize };
        &self.buf[start..self.ends[k] as usize]
    }

    /// The pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        (0..self.len()).map(move |i| (self.str_at(2 * i), self.str_at(2 * i + 1)))
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        // label sets are small: a linear scan beats a binary search's branches
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The metric name, `""` when absent.
    pub fn metric_name(&self) -> &str {
        self.get(METRIC_NAME).unwrap_or("")
    }

    /// A new label set keeping only the labels for which `keep` is true.
    pub fn filter(&self, mut keep: impl FnMut(&str) -> bool) -> Labels {
        let pairs: Vec<(&str, &str)> = self.iter().filter(|(n, _)| keep(n)).collect();
        Labels::from_sorted(&pairs)
    }

    /// Heap bytes held by this label set (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.buf.len() + self.ends.len() * 4
    }
}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.buf.hash(state);
        self.ends.hash(state);
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
}
