//! The HTML around the charts: the page's head and CSS, each file's header (what was replayed,
//! with which models and features, and how it did), the legend, and the index of several files.
//!
//! The markup is well-formed XML as well as HTML (every element closed, only XML's five
//! entities), so a strict parser reads it too. Each count is in a `<span data-count="...">` for a
//! reader or a test to find.

use std::fmt::Write as _;
use std::time::Duration;

use super::chart::{FLAG, PROBATION, RETRAIN, THRESHOLD, WARM_UP, WINDOW};
use super::panels::FORECAST;
use super::{Assessment, Replayed};
use crate::batch::nab::{CorpusScore, PROFILES};
use crate::batch::replay::Trace;

/// Text for HTML: `&`, `<`, `>` and quotes escaped.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font-family: sans-serif; margin: 16px 24px; color: #222; background: #fff; }
h1 { font-size: 20px; margin: 0 0 12px; }
h2 { font-size: 17px; margin: 28px 0 6px; border-top: 2px solid #ccc; padding-top: 12px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 12px; }
.facts td:first-child { color: #555; white-space: nowrap; }
.legend { font-size: 12px; margin: 8px 0; }
.legend span.key { display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 12px; vertical-align: middle; }
.panel { margin: 4px 0 0; }
.panel .title { font-size: 13px; font-weight: bold; }
.panel .note { font-size: 12px; color: #555; font-weight: normal; margin-left: 8px; }
svg { display: block; }
";

/// The page up to its first heading.
pub(crate) fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(title)
    )
}

pub(crate) const FOOT: &str = "</body>\n</html>\n";

fn hex(c: plotters::style::RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

fn duration(ms: i64) -> String {
    humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// A count a reader or test can find by name.
fn count(name: &str, n: usize) -> String {
    format!("<span data-count=\"{name}\">{n}</span>")
}

/// A normalised NAB score, `n/a` where not defined (no windows).
fn nab_score(c: &CorpusScore) -> String {
    if c.normalised.is_finite() {
        format!("{:.2}", c.normalised)
    } else {
        "n/a".to_owned()
    }
}

fn threshold(c: &CorpusScore) -> String {
    if c.threshold.is_finite() {
        format!("{:.4}", c.threshold)
    } else {
        "none (detecting nothing scores best)".to_owned()
    }
}

/// The file's anchor in the page.
fn anchor(k: usize) -> String {
    format!("file-{k}")
}

/// The file's header: what was replayed with which models and features, and how it did.
pub(crate) fn header(k: usize, file: &Replayed, a: &Assessment, config: &str) -> String {
    let (trace, outcome) = (&file.trace, &file.outcome);
    let mut h = format!(
        "<section class=\"file\" id=\"{}\">\n<h2>{}</h2>\n<table class=\"facts\">\n",
        anchor(k),
        escape(&file.input.display().to_string())
    );
    let mut row = |name: &str, value: String| {
        let _ = writeln!(h, "<tr><td>{name}</td><td>{value}</td></tr>");
    };
    row("config", escape(config));
    let mut models = Vec::new();
    if let Some(d) = &trace.detector {
        models.push(format!(
            "<code>{}</code>: isolation forest every {}, features {}, alert at likelihood ≥ {}",
            escape(&d.name),
            duration(d.step_ms),
            code_list(&d.features),
            d.threshold
        ));
    }
    if let Some(f) = &trace.forecaster {
        models.push(format!(
            "<code>{}</code>: random forest every {}, features {}, forecasts {} {} steps ahead from {} steps",
            escape(&f.name),
            duration(f.step_ms),
            code_list(&f.features),
            code_list(&f.targets),
            f.horizon,
            f.lookback
        ));
    }
    row("models", models.join("<br/>"));
    let features: Vec<String> = trace
        .features
        .iter()
        .map(|f| {
            format!(
                "<code>{}</code> = <code>{}</code>",
                escape(&f.name),
                escape(&f.expression)
            )
        })
        .collect();
    row("features", features.join("<br/>"));
    row(
        "replay",
        format!(
            "{} rows, {} model steps, {} scored, {} flagged",
            count("rows", outcome.rows),
            count("steps", outcome.steps),
            count("scored", outcome.scored_steps),
            count("flagged", a.flagged)
        ),
    );
    if let Some(s) = &outcome.summary {
        row(
            "labels",
            format!(
                "windows detected {}/{}, false positives {}, flagged {} of {} scored steps after probation (the first {} rows)",
                count("detected", s.detected),
                count("windows", s.windows),
                count("false-positives", s.false_positives),
                count("flagged-after-probation", s.flagged_steps),
                count("scored-after-probation", s.scored_steps),
                count("probation-rows", s.probation_rows)
            ),
        );
    }
    if let Some(nab) = &a.nab {
        let mut t = String::from(
            "<table class=\"nab\"><tr><th>profile</th><th>score</th><th>its threshold</th><th>detected</th><th>false positives</th></tr>",
        );
        for (p, (c, b)) in PROFILES.iter().zip(nab) {
            let _ = write!(
                t,
                "<tr><td>{}</td><td class=\"n\" data-nab=\"{}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}/{}</td><td class=\"n\">{}</td></tr>",
                p.name,
                p.name,
                nab_score(c),
                threshold(c),
                b.detected,
                b.windows,
                b.false_positives
            );
        }
        t.push_str("</table>NAB 1.1's score of this file alone, on the likelihood, at the threshold best for it (a corpus run picks one threshold for all files)");
        row("NAB", t);
    }
    h.push_str("</table>\n");
    h
}

fn code_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("<code>{}</code>", escape(n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the shades, marks and lines mean, for this file's panels.
pub(crate) fn legend(trace: &Trace) -> String {
    let key = |colour, alpha: f64, text: &str| {
        let c = hex(colour);
        format!(
            "<span class=\"key\" style=\"background: {c}; opacity: {alpha}\"></span>{}",
            escape(text)
        )
    };
    let mut keys = Vec::new();
    if trace.windows.is_some() {
        keys.push(key(WINDOW, 0.35, "labelled window"));
        keys.push(key(PROBATION, 0.4, "NAB probation (not counted)"));
    }
    if trace.detector.is_some() {
        keys.push(key(WARM_UP, 0.35, "warm-up (the model cannot flag yet)"));
        keys.push(key(FLAG, 1.0, "flagged step"));
        keys.push(key(THRESHOLD, 1.0, "alert threshold"));
        keys.push(key(RETRAIN, 1.0, "retrain"));
    }
    if trace.forecaster.is_some() {
        keys.push(key(FORECAST, 1.0, "forecast"));
    }
    format!("<div class=\"legend\">{}</div>\n", keys.join(""))
}

/// Opens a panel's `<div>` with its title; the caller adds the SVG and closes it.
pub(crate) fn panel_title(title: &str, note: &str) -> String {
    format!(
        "<div class=\"panel\"><div class=\"title\">{}<span class=\"note\">{}</span></div>",
        escape(title),
        escape(note)
    )
}

/// The index of several files, in the order given (worst first), with the corpus's NAB scores
/// when every file has labels.
pub(crate) fn index<'a>(
    files: impl Iterator<Item = (&'a Replayed, &'a Assessment)>,
    corpus: Option<&[CorpusScore]>,
) -> String {
    let mut h = String::from("<section class=\"index\">\n");
    if let Some(corpus) = corpus {
        let scores: Vec<String> = PROFILES
            .iter()
            .zip(corpus)
            .map(|(p, c)| {
                format!(
                    "{} <span data-corpus=\"{}\">{}</span> (threshold {})",
                    p.name,
                    p.name,
                    nab_score(c),
                    threshold(c)
                )
            })
            .collect();
        let _ = writeln!(
            h,
            "<p>NAB 1.1 over these files, one threshold per profile as <code>benches/compare/nab_replay.sh</code> picks it: {}</p>",
            scores.join("; ")
        );
    }
    h.push_str("<table class=\"index\"><tr><th>file</th><th>rows</th><th>windows detected</th><th>windows missed</th><th>false positives</th><th>flagged</th><th>NAB standard, alone</th></tr>\n");
    for (k, (file, a)) in files.enumerate() {
        let s = file.outcome.summary.as_ref();
        let cell = |v: Option<String>| v.unwrap_or_else(|| "–".to_owned());
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#{}\">{}</a></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            anchor(k),
            escape(&file.input.display().to_string()),
            file.outcome.rows,
            cell(s.map(|s| format!("{}/{}", s.detected, s.windows))),
            cell(s.map(|s| (s.windows - s.detected).to_string())),
            cell(s.map(|s| s.false_positives.to_string())),
            a.flagged,
            cell(
                a.nab
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|(c, _)| nab_score(c))
            )
        );
    }
    h.push_str("</table>\n</section>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape(r#"a<b & "c" 'd'>"#),
            "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;"
        );
    }
}
