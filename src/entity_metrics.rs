//! The per-entity series of `/metrics` (`canopy_anomaly*`, `canopy_forecast`,
//! `canopy_feature_value`, `canopy_anomalies_total`), which leave when their entity goes stale.
//!
//! The `metrics` recorder cannot remove a series, so a gone node's or pod's last values would
//! stay exported forever: an alert on `canopy_anomaly` could never resolve, and the label sets of
//! every pod that ever ran would pile up. So these series live here instead. Each one remembers
//! the event time after which it is stale (its last step plus `evaluation.stale_steps` of its
//! producer's step) and is dropped once a later step passes that time; Prometheus then marks it
//! stale at its next scrape, and the alert resolves.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};

use metrics::Label;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

struct Point {
    value: f64,
    /// Event time after which the series is dropped.
    stale_after_ms: i64,
}

struct Family {
    kind: Kind,
    series: HashMap<Vec<Label>, Point>,
}

/// A set of per-entity series, rendered in the Prometheus text format.
#[derive(Default)]
pub(crate) struct EntityMetrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    families: BTreeMap<&'static str, Family>,
    /// The newest event time seen; series stale before it are gone.
    now_ms: i64,
}

static GLOBAL: LazyLock<EntityMetrics> = LazyLock::new(EntityMetrics::default);

/// The process's per-entity series, rendered by `/metrics`.
pub(crate) fn global() -> &'static EntityMetrics {
    &GLOBAL
}

/// Sets the gauge `name{labels}` in the process's set, from the step at `t_ms`, stale `stale_ms`
/// after it.
pub(crate) fn entity_gauge(
    name: &'static str,
    labels: Vec<Label>,
    value: f64,
    t_ms: i64,
    stale_ms: i64,
) {
    global().update(name, Kind::Gauge, labels, value, t_ms, stale_ms);
}

/// Adds `delta` (0 keeps an idle entity's counter alive) to the counter `name{labels}` in the
/// process's set, from the step at `t_ms`, stale `stale_ms` after it.
pub(crate) fn entity_counter(
    name: &'static str,
    labels: Vec<Label>,
    delta: f64,
    t_ms: i64,
    stale_ms: i64,
) {
    global().update(name, Kind::Counter, labels, delta, t_ms, stale_ms);
}

impl EntityMetrics {
    fn update(
        &self,
        name: &'static str,
        kind: Kind,
        labels: Vec<Label>,
        value: f64,
        t_ms: i64,
        stale_ms: i64,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if t_ms > inner.now_ms {
            inner.now_ms = t_ms;
            inner.sweep();
        }
        let family = inner.families.entry(name).or_insert_with(|| Family {
            kind,
            series: HashMap::new(),
        });
        let stale_after_ms = t_ms.saturating_add(stale_ms);
        let point = family.series.entry(labels).or_insert(Point {
            value: 0.0,
            stale_after_ms,
        });
        point.stale_after_ms = point.stale_after_ms.max(stale_after_ms);
        match kind {
            Kind::Gauge => point.value = value,
            Kind::Counter => point.value += value,
        }
    }

    /// How many series are exported.
    #[cfg(test)]
    fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.families.values().map(|f| f.series.len()).sum()
    }

    /// Appends every series in the Prometheus text format, each family under its `# HELP` (from
    /// `help`) and `# TYPE` lines, in a stable order.
    pub(crate) fn render(&self, out: &mut String, help: impl Fn(&str) -> Option<&'static str>) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (name, family) in &inner.families {
            if family.series.is_empty() {
                continue;
            }
            if let Some(help) = help(name) {
                let _ = writeln!(out, "# HELP {name} {help}");
            }
            let kind = match family.kind {
                Kind::Gauge => "gauge",
                Kind::Counter => "counter",
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let mut series: Vec<_> = family.series.iter().collect();
            series.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (labels, point) in series {
                out.push_str(name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, l) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(l.key());
                        out.push_str("=\"");
                        escape_into(out, l.value());
                        out.push('"');
                    }
                    out.push('}');
                }
                out.push(' ');
                format_value(out, point.value);
                out.push('\n');
            }
        }
    }
}

impl Inner {
    fn sweep(&mut self) {
        let now = self.now_ms;
        for family in self.families.values_mut() {
            family.series.retain(|_, p| p.stale_after_ms >= now);
        }
    }
}

/// A label value escaped as the text format requires: backslash, double quote and line feed.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value as the text format spells it (`NaN`, `+Inf`, `-Inf`).
fn format_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&'static str, &str)]) -> Vec<Label> {
        pairs
            .iter()
            .map(|(k, v)| Label::new(*k, (*v).to_owned()))
            .collect()
    }

    fn rendered(m: &EntityMetrics) -> String {
        let mut out = String::new();
        m.render(&mut out, |name| (name == "g").then_some("a gauge"));
        out
    }

    #[test]
    fn an_entity_leaves_once_a_later_step_passes_its_stale_time() {
        let m = EntityMetrics::default();
        let (a, b) = (labels(&[("node", "a")]), labels(&[("node", "b")]));
        m.update("g", Kind::Gauge, a.clone(), 1.0, 0, 300);
        m.update("g", Kind::Gauge, b.clone(), 2.0, 0, 300);
        for t in [100, 200, 300] {
            m.update("g", Kind::Gauge, a.clone(), 3.0, t, 300);
        }
        assert_eq!(
            rendered(&m),
            "# HELP g a gauge\n# TYPE g gauge\ng{node=\"a\"} 3\ng{node=\"b\"} 2\n",
            "b is stale only after 300"
        );
        m.update("g", Kind::Gauge, a, 4.0, 400, 300);
        assert_eq!(
            rendered(&m),
            "# HELP g a gauge\n# TYPE g gauge\ng{node=\"a\"} 4\n"
        );
        // Seen again, it comes back.
        m.update("g", Kind::Gauge, b, 5.0, 500, 300);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn counters_add_and_values_and_labels_are_written_as_the_text_format_says() {
        let m = EntityMetrics::default();
        let l = labels(&[("pod", "a\"b\\c\nd")]);
        m.update("c", Kind::Counter, l.clone(), 0.0, 0, 10);
        m.update("c", Kind::Counter, l.clone(), 1.0, 1, 10);
        m.update("c", Kind::Counter, l, 1.0, 2, 10);
        m.update("g", Kind::Gauge, labels(&[("x", "nan")]), f64::NAN, 2, 10);
        m.update(
            "g",
            Kind::Gauge,
            labels(&[("x", "inf")]),
            f64::INFINITY,
            2,
            10,
        );
        m.update("g", Kind::Gauge, labels(&[("x", "small")]), 1e-7, 2, 10);
        assert_eq!(
            rendered(&m),
            "# TYPE c counter\nc{pod=\"a\\\"b\\\\c\\nd\"} 2\n\
             # HELP g a gauge\n# TYPE g gauge\ng{x=\"inf\"} +Inf\ng{x=\"nan\"} NaN\ng{x=\"small\"} 0.0000001\n"
        );
    }
}
