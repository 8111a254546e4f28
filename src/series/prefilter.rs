//! The ingest prefilter: decides, right after decode, whether any feature can use a series.
//!
//! Built from the selectors of every configured feature expression. A series that matches none
//! is dropped before it reaches the store, so memory grows with the series the features need and
//! not with what Prometheus happens to send. Selectors that pin a metric name are found with one
//! hash lookup; the rest (name regexes, label-only selectors) are checked one by one.

use super::labels::METRIC_NAME;
use super::selector::Selector;
use super::store::metric_name_of;

#[derive(Debug, Default, Clone)]
pub struct Prefilter {
    /// foldhash, not SipHash: every decoded series is looked up here, and the map holds only the
    /// configured names, so a sender cannot fill it with colliding keys for SipHash to defend.
    by_name: foldhash::HashMap<String, Vec<Selector>>,
    unnamed: Vec<Selector>,
    /// Every selector matches on `__name__` alone: [`Prefilter::by_name`] always decides.
    names_decide: bool,
}

/// True when the selector's matchers are all on the metric name, so the name alone decides.
fn name_only(s: &Selector) -> bool {
    s.matchers.iter().all(|m| m.name == METRIC_NAME)
}

impl Prefilter {
    pub fn new(selectors: impl IntoIterator<Item = Selector>) -> Prefilter {
        let mut p = Prefilter {
            names_decide: true,
            ..Prefilter::default()
        };
        for s in selectors {
            p.names_decide &= name_only(&s);
            match &s.metric_name {
                Some(name) => p.by_name.entry(name.clone()).or_default().push(s),
                None => p.unnamed.push(s),
            }
        }
        // Selectors that need only the name first, so `by_name` can answer before the others.
        for group in p.by_name.values_mut() {
            group.sort_by_key(|s| !name_only(s));
        }
        p.unnamed.sort_by_key(|s| !name_only(s));
        p
    }

    /// What the metric name alone decides: `Some(true)` when a selector that matches only on the
    /// name accepts it, `Some(false)` when no selector can accept a series of this name whatever
    /// its other labels, `None` when the other labels decide ([`Prefilter::accepts`]). Lets the
    /// decoder drop a series before it collects its labels.
    pub(crate) fn by_name(&self, name: &str) -> Option<bool> {
        let get = |n: &str| (n == METRIC_NAME).then_some(name);
        let named = self.by_name.get(name).map_or(&[][..], Vec::as_slice);
        if self.names_decide {
            return Some(named.iter().chain(&self.unnamed).any(|s| s.matches(get)));
        }
        let mut undecided = false;
        for s in named.iter().chain(&self.unnamed) {
            if !name_only(s) {
                undecided = true;
            } else if s.matches(get) {
                return Some(true);
            }
        }
        (!undecided).then_some(false)
    }

    /// True when some feature selector matches the series with these sorted label pairs.
    pub(crate) fn accepts(&self, pairs: &[(&str, &str)]) -> bool {
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
        // The name alone: the CPU selector needs `mode`, the regex decides by name.
        assert_eq!(p.by_name("node_cpu_seconds_total"), None);
        assert_eq!(
            p.by_name("container_network_receive_bytes_total"),
            Some(true)
        );
        assert_eq!(p.by_name("go_goroutines"), Some(false));
    }

    #[test]
    fn the_name_decides_when_the_selectors_need_nothing_else() {
        let p = Prefilter::new([
            Selector::new(Some("up"), &[]),
            Selector::new(
                Some("node_cpu_seconds_total"),
                &[Matcher::new(MatchOp::NotEqual, "mode", "idle")],
            ),
        ]);
        assert_eq!(p.by_name("up"), Some(true));
        assert_eq!(p.by_name("node_cpu_seconds_total"), None);
        assert_eq!(p.by_name("go_goroutines"), Some(false));
        let names_only = Prefilter::new([Selector::new(Some("up"), &[])]);
        assert_eq!(names_only.by_name("up"), Some(true));
        assert_eq!(names_only.by_name("down"), Some(false));
        // A label-only selector may accept any name.
        let any = Prefilter::new([Selector::new(
            None,
            &[Matcher::new(MatchOp::Equal, "job", "node")],
        )]);
        assert_eq!(any.by_name("up"), None);
        assert!(any.accepts(&[("__name__", "up"), ("job", "node")]));
    }

    fn regex_lite(re: &str) -> regex::Regex {
        regex::Regex::new(&format!("^(?:{re})$")).expect("valid regex")
    }
}
