//! The CSV format of `canopy score` and `canopy replay`: a header whose first column is
//! `timestamp`, then one numeric column per series (replay) or feature (score).
//!
//! - Timestamps are UTC: `YYYY-MM-DD HH:MM:SS` (optionally with fractional seconds, as NAB's
//!   files and windows write them), RFC 3339 (`2024-01-02T03:04:05Z`, `+02:00`), or Unix
//!   seconds (`1700000000`, `1700000000.5`). They are kept as Unix milliseconds, the store's unit.
//! - An empty cell (or `NaN`) is a missing value; any other cell must be a finite number.
//! - Rows may come in any order: they are sorted by time, stably, and a repeated timestamp keeps
//!   its first row, so the result does not depend on how a file was concatenated.
//!
//! Parsing is hand-written because the format is this small: no quoting beyond optional double
//! quotes around a whole cell, no embedded commas. Every error names the line it is on.

use std::path::Path;

use crate::calendar::{civil_from_days, days_from_civil};

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: the file is empty: it needs a header `timestamp,<column>,...`")]
    Empty { origin: String },
    #[error(
        "{origin} line 1: the first column must be `timestamp`, found `{found}` (header: timestamp,<column>,...)"
    )]
    NoTimestampColumn { origin: String, found: String },
    #[error("{origin} line 1: the header has no column after `timestamp`")]
    NoColumns { origin: String },
    #[error("{origin} line 1: column `{name}` appears twice")]
    DuplicateColumn { origin: String, name: String },
    #[error("{origin} line 1: column {index} has an empty name")]
    EmptyColumnName { origin: String, index: usize },
    #[error("{origin} line {line}: {found} cells, but the header has {expected} columns")]
    ColumnCount {
        origin: String,
        line: usize,
        found: usize,
        expected: usize,
    },
    #[error(
        "{origin} line {line}: `{value}` is not a timestamp (use `YYYY-MM-DD HH:MM:SS`, RFC 3339 or Unix seconds, UTC)"
    )]
    BadTimestamp {
        origin: String,
        line: usize,
        value: String,
    },
    #[error("{origin} line {line}, column `{column}`: `{value}` is not a finite number")]
    NotANumber {
        origin: String,
        line: usize,
        column: String,
        value: String,
    },
    #[error("{origin}: no data rows after the header")]
    NoRows { origin: String },
}

/// One data row: its time, the line it came from (for messages) and a value per column.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub t_ms: i64,
    pub line: usize,
    /// One per [`Table::columns`]; `None` for a missing value.
    pub values: Vec<Option<f64>>,
}

/// A parsed CSV: the value columns (the header without `timestamp`) and the rows, sorted by time
/// with repeated timestamps removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

/// Strips surrounding whitespace and one pair of double quotes.
fn cell(raw: &str) -> &str {
    let s = raw.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
        .trim()
}

impl Table {
    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Table, CsvError> {
        let text = std::fs::read_to_string(path).map_err(|source| CsvError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Table::parse(&text, &path.display().to_string())
    }

    /// Parses CSV text; `origin` (a file name) prefixes every error.
    pub fn parse(text: &str, origin: &str) -> Result<Table, CsvError> {
        let origin = origin.to_owned();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        let Some((_, header)) = lines.next() else {
            return Err(CsvError::Empty { origin });
        };
        let mut names = header.split(',').map(cell);
        let first = names.next().unwrap_or_default();
        if !first.eq_ignore_ascii_case("timestamp") {
            return Err(CsvError::NoTimestampColumn {
                origin,
                found: first.to_owned(),
            });
        }
        let mut columns: Vec<String> = Vec::new();
        for (k, name) in names.enumerate() {
            if name.is_empty() {
                return Err(CsvError::EmptyColumnName {
                    origin,
                    index: k + 2,
                });
            }
            if columns.iter().any(|c| c == name) {
                return Err(CsvError::DuplicateColumn {
                    origin,
                    name: name.to_owned(),
                });
            }
            columns.push(name.to_owned());
        }
        if columns.is_empty() {
            return Err(CsvError::NoColumns { origin });
        }
        let mut rows = Vec::new();
        for (line, text) in lines {
            if text.trim().is_empty() {
                continue;
            }
            let cells: Vec<&str> = text.split(',').map(cell).collect();
            if cells.len() != columns.len() + 1 {
                return Err(CsvError::ColumnCount {
                    origin,
                    line,
                    found: cells.len(),
                    expected: columns.len() + 1,
                });
            }
            let t_ms = parse_timestamp(cells[0]).ok_or_else(|| CsvError::BadTimestamp {
                origin: origin.clone(),
                line,
                value: cells[0].to_owned(),
            })?;
            let mut values = Vec::with_capacity(columns.len());
            for (c, raw) in cells[1..].iter().enumerate() {
                values.push(parse_value(raw).ok_or_else(|| CsvError::NotANumber {
                    origin: origin.clone(),
                    line,
                    column: columns[c].clone(),
                    value: (*raw).to_owned(),
                })?);
            }
            rows.push(Row { t_ms, line, values });
        }
        if rows.is_empty() {
            return Err(CsvError::NoRows { origin });
        }
        // Stable: rows with the same timestamp stay in file order, so dedup keeps the first.
        rows.sort_by_key(|r| r.t_ms);
        rows.dedup_by_key(|r| r.t_ms);
        Ok(Table { columns, rows })
    }

    /// The index of a value column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// A cell's value: `Some(None)` for a missing value, `None` when it is not a number.
fn parse_value(raw: &str) -> Option<Option<f64>> {
    if raw.is_empty() || raw.eq_ignore_ascii_case("nan") {
        return Some(None);
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Some(Some(v)),
        _ => None,
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Fixed-width decimal digits, or `None`.
fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Unix milliseconds of a timestamp in any of the accepted forms, or `None`.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.contains(['-', ':']) || (s.starts_with('-') && !s[1..].contains(['-', ':'])) {
        // Unix seconds, possibly fractional or negative.
        let secs: f64 = s.parse().ok()?;
        let ms = (secs * 1000.0).round();
        return (ms.is_finite() && ms.abs() < 1e17).then_some(ms as i64);
    }
    // Byte offsets below index characters only in ASCII text.
    if !s.is_ascii() {
        return None;
    }
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b' ' | b'T' | b't') {
        return None;
    }
    let (y, mo, d) = (digits(&s[0..4])?, digits(&s[5..7])?, digits(&s[8..10])?);
    let (h, mi, sec) = (
        digits(&s[11..13])?,
        digits(&s[14..16])?,
        digits(&s[17..19])?,
    );
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if end == 0 {
            return None;
        }
        // Milliseconds, rounded from however many digits are given.
        let f: f64 = format!("0.{}", &frac[..end]).parse().ok()?;
        ms = (f * 1000.0).round() as i64;
        rest = &frac[end..];
    }
    let offset_s = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let off = &rest[1..];
            if off.len() != 5 || off.as_bytes()[2] != b':' {
                return None;
            }
            let (oh, om) = (digits(&off[0..2])?, digits(&off[3..5])?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(secs * 1000 + ms)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC), with `.mmm` when the time has milliseconds: the form canopy
/// writes in its CSV output, which [`parse_timestamp`] reads back.
pub fn format_timestamp(t_ms: i64) -> String {
    let secs = t_ms.div_euclid(1000);
    let ms = t_ms.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    let base = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    );
    if ms == 0 {
        base
    } else {
        format!("{base}.{ms:03}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_accepted_form() {
        let t = 1_396_310_400_000; // 2014-04-01 00:00:00 UTC
        assert_eq!(parse_timestamp("2014-04-01 00:00:00"), Some(t));
        assert_eq!(
            parse_timestamp("2014-04-01 00:05:00.000000"),
            Some(t + 300_000)
        );
        assert_eq!(parse_timestamp("2014-04-01T00:00:00Z"), Some(t));
        assert_eq!(parse_timestamp("2014-04-01T02:00:00+02:00"), Some(t));
        assert_eq!(
            parse_timestamp("2014-03-31T23:00:00.250-01:00"),
            Some(t + 250)
        );
        assert_eq!(parse_timestamp("1396310400"), Some(t));
        assert_eq!(parse_timestamp("1396310400.5"), Some(t + 500));
        assert_eq!(
            parse_timestamp("2000-02-29 12:00:00"),
            Some(951_825_600_000)
        );
        for bad in [
            "",
            "yesterday",
            "2014-13-01 00:00:00",
            "2014-02-30 00:00:00",
            "2014-04-01 24:00:00",
            "2014-04-01",
            "2014-04-01 00:00:00 UTC",
            "2014-04-01T00:00:00+2",
            "2014-04-01 00:00:00.",
            "2014-04-01 00:00:0é",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formatted_timestamps_read_back() {
        for t in [
            0,
            1_396_310_400_000,
            951_825_600_123,
            -86_400_000,
            4_102_444_799_999,
        ] {
            assert_eq!(parse_timestamp(&format_timestamp(t)), Some(t), "{t}");
        }
        assert_eq!(format_timestamp(1_396_310_700_000), "2014-04-01 00:05:00");
        assert_eq!(format_timestamp(951_825_600_123), "2000-02-29 12:00:00.123");
    }

    #[test]
    fn rows_are_sorted_stably_and_a_repeated_timestamp_keeps_its_first_row() {
        let text = "timestamp,a,b\n\
                    2014-04-01 00:10:00,3,\n\
                    2014-04-01 00:00:00,1,10\n\
                    2014-04-01 00:10:00,99,99\n\
                    \"2014-04-01 00:05:00\", 2 ,NaN\n\n";
        let t = Table::parse(text, "x.csv").expect("parses");
        assert_eq!(t.columns, ["a", "b"]);
        let got: Vec<(i64, Vec<Option<f64>>)> =
            t.rows.iter().map(|r| (r.t_ms, r.values.clone())).collect();
        let t0 = 1_396_310_400_000;
        assert_eq!(
            got,
            [
                (t0, vec![Some(1.0), Some(10.0)]),
                (t0 + 300_000, vec![Some(2.0), None]),
                (t0 + 600_000, vec![Some(3.0), None]),
            ]
        );
        assert_eq!(t.rows[2].line, 2, "the first of the repeated rows is kept");
        assert_eq!(t.column("b"), Some(1));
    }

    #[test]
    fn errors_name_the_line_and_what_is_wrong() {
        let err = |text: &str| {
            Table::parse(text, "in.csv")
                .expect_err("refused")
                .to_string()
        };
        let e = err("timestamp,a\n2014-04-01 00:00:00,1\nnot a time,2\n");
        assert!(
            e.contains("in.csv line 3") && e.contains("not a time"),
            "{e}"
        );
        let e = err("timestamp,a,b\n2014-04-01 00:00:00,1\n");
        assert!(
            e.contains("line 2") && e.contains("2 cells") && e.contains("3 columns"),
            "{e}"
        );
        let e = err("timestamp,a\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,abc\n");
        assert!(
            e.contains("line 3") && e.contains("`a`") && e.contains("abc"),
            "{e}"
        );
        let e = err("timestamp,a\n1,inf\n");
        assert!(e.contains("finite"), "{e}");
        let e = err("time,a\n1,1\n");
        assert!(e.contains("`timestamp`") && e.contains("time"), "{e}");
        assert!(err("").contains("empty"));
        assert!(err("timestamp\n1\n").contains("no column"));
        assert!(err("timestamp,a,a\n1,1,1\n").contains("twice"));
        assert!(err("timestamp,a\n\n").contains("no data rows"));
    }
}
