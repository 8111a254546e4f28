//! The ingest prefilter: decides, right after decode, whether any feature can use a series.
//!
//! Built from the selectors of every configured feature expression. A series that matches none
//! is dropped before it reaches the store, so memory grows with the series the features need and
//! not with what Prometheus happens to send. Selectors that pin a metric name are found with one
//! hash lookup; the rest (name regexes, label-only selectors) are checked one by one.

use super::selector::Selector;
use super::store::metric_name_of;

#[derive(Debug, Default, Clone)]
pub struct Prefilter {
    /// foldhash, not SipHash: every decoded series is looked up here, and the map holds only the
    /// configured names, so a sender cannot fill it with colliding keys for SipHash to defend.
    by_name: foldhash::HashMap<String, Vec<Selector>>,
    unnamed: Vec<Selector>,
}

impl Prefilter {
    pub fn new(selectors: impl IntoIterator<Item = Selector>) -> Prefilter {
        let mut p = Prefilter::default();
        for s in selectors {
            match &s.metric_name {
                Some(name) => p.by_name.entry(name.clone()).or_default().push(s),
                None => p.unnamed.push(s),
            }
        }
        p
    }

    /// True when some feature selector matches the series with these sorted label pairs.
    pub fn accepts(&self, pairs: &[(&str, &str)]) -> bool {
        let get = |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        if let Some(selectors) = metric_name_of(pairs).and_then(|n| self.by_name.get(n))
            && selectors.iter().any(|s| s.matches(get))
        {
            return true;
        }
        self.unnamed.iter().any(|s| s.matches(get))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::label::{MatchOp, Matcher};

    #[test]
    fn named_and_unnamed_selectors() {
        let p = Prefilter::new([
            Selector::new(
                Some("node_cpu_seconds_total"),
                &[Matcher::new(MatchOp::NotEqual, "mode", "idle")],
            ),
            Selector::new(
                None,
                &[Matcher::new(
                    MatchOp::Re(regex_lite("container_.*")),
                    "__name__",
                    "container_.*",
                )],
            ),
        ]);
        assert!(p.accepts(&[("__name__", "node_cpu_seconds_total"), ("mode", "user")]));
        assert!(!p.accepts(&[("__name__", "node_cpu_seconds_total"), ("mode", "idle")]));
        assert!(p.accepts(&[("__name__", "container_network_receive_bytes_total")]));
        assert!(!p.accepts(&[("__name__", "go_goroutines")]));
    }

    fn regex_lite(re: &str) -> regex::Regex {
        regex::Regex::new(&format!("^(?:{re})$")).expect("valid regex")
    }
}
