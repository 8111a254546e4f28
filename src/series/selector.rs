//! Series selectors: a metric name and label matchers, as written in a feature's PromQL.
//!
//! One type serves the two places that must agree on what a selector selects: the ingest
//! prefilter (which drops every decoded series no feature can use) and the evaluator (which reads
//! matching series from the store). Matchers are `promql-parser`'s, whose regexes are fully
//! anchored as in Prometheus; a label that a series lacks matches as the empty string.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::Expr;

use super::labels::METRIC_NAME;

#[derive(Debug, Clone)]
pub struct Selector {
    /// The metric name when the selector pins it with `=` (as `name{...}` or `{__name__="name"}`).
    pub(crate) metric_name: Option<String>,
    /// Every matcher, conjunctive, the name's own included.
    pub(crate) matchers: Vec<Matcher>,
}

impl Selector {
    /// Builds a selector from the parser's name and matchers.
    pub fn new(name: Option<&str>, matchers: &[Matcher]) -> Selector {
        let mut all: Vec<Matcher> = matchers.to_vec();
        let mut metric_name = name.map(str::to_owned);
        if let Some(n) = name
            && !all
                .iter()
                .any(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal && m.value == n)
        {
            all.push(Matcher::new(MatchOp::Equal, METRIC_NAME, n));
        }
        if metric_name.is_none() {
            metric_name = all
                .iter()
                .find(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
                .map(|m| m.value.clone());
        }
        Selector {
            metric_name,
            matchers: all,
        }
    }

    /// Every vector selector in a parsed expression, in the order they appear, with
    /// `or`-groups of matchers (`{a="1" or b="2"}`) split into one selector each.
    pub(crate) fn all_in(expr: &Expr) -> Vec<Selector> {
        let mut out = Vec::new();
        collect(expr, &mut out);
        out
    }

    /// True when every matcher accepts the series whose labels `get` looks up.
    pub(crate) fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.matchers
            .iter()
            .all(|m| m.is_match(get(&m.name).unwrap_or("")))
    }
}

fn collect(expr: &Expr, out: &mut Vec<Selector>) {
    let mut push = |vs: &promql_parser::parser::VectorSelector| {
        let m = &vs.matchers;
        if m.or_matchers.is_empty() {
            out.push(Selector::new(vs.name.as_deref(), &m.matchers));
        }
        for group in &m.or_matchers {
            let mut all = m.matchers.clone();
            all.extend(group.iter().cloned());
            out.push(Selector::new(vs.name.as_deref(), &all));
        }
    };
    match expr {
        Expr::VectorSelector(vs) => push(vs),
        Expr::MatrixSelector(ms) => push(&ms.vs),
        Expr::Aggregate(a) => {
            collect(&a.expr, out);
            if let Some(p) = &a.param {
                collect(p, out);
            }
        }
        Expr::Unary(u) => collect(&u.expr, out),
        Expr::Binary(b) => {
            collect(&b.lhs, out);
            collect(&b.rhs, out);
        }
        Expr::Paren(p) => collect(&p.expr, out),
        Expr::Subquery(s) => collect(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect(a, out)),
        Expr::Extension(_) | Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::labels::Labels;

    fn selector(expr: &str) -> Selector {
        match promql_parser::parser::parse(expr).expect("parses") {
            promql_parser::parser::Expr::VectorSelector(vs) => {
                Selector::new(vs.name.as_deref(), &vs.matchers.matchers)
            }
            other => panic!("not a selector: {other:?}"),
        }
    }

    #[test]
    fn all_selectors_of_an_expression() {
        let e = promql_parser::parser::parse(
            "sum(rate(a{x=\"1\"}[5m])) / on() (b - c offset 1m) or vector(0)",
        )
        .expect("parses");
        let names: Vec<_> = Selector::all_in(&e)
            .into_iter()
            .map(|s| s.metric_name)
            .collect();
        assert_eq!(
            names,
            [Some("a".into()), Some("b".into()), Some("c".into())]
        );
    }

    #[test]
    fn name_and_matchers_including_missing_labels_and_anchoring() {
        let s = selector(r#"node_cpu_seconds_total{mode!="idle",cpu=~"1|2"}"#);
        assert_eq!(s.metric_name.as_deref(), Some("node_cpu_seconds_total"));
        let l = Labels::from_pairs([
            ("__name__", "node_cpu_seconds_total"),
            ("mode", "user"),
            ("cpu", "1"),
        ]);
        assert!(s.matches(|n| l.get(n)));
        let l = Labels::from_pairs([
            ("__name__", "node_cpu_seconds_total"),
            ("mode", "user"),
            ("cpu", "12"),
        ]);
        assert!(!s.matches(|n| l.get(n)), "regex must be anchored");
        let s = selector(r#"{__name__="up", job!="x"}"#);
        assert_eq!(s.metric_name.as_deref(), Some("up"));
        let l = Labels::from_pairs([("__name__", "up")]);
        assert!(
            s.matches(|n| l.get(n)),
            "a missing label is the empty string"
        );
    }
}
