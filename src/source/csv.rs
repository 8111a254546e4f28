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
//! Records are read by the `csv` crate (RFC 4180 quoting: a quoted cell may hold commas and
//! doubled quotes) and calendar times by the `time` crate. Every error names the line it is on.

use std::path::Path;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

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

impl Table {
    /// Reads and parses the file at `path`.
    pub(crate) fn read(path: &Path) -> Result<Table, CsvError> {
        let text = std::fs::read_to_string(path).map_err(|source| CsvError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Table::parse(&text, &path.display().to_string())
    }

    /// Parses CSV text; `origin` (a file name) prefixes every error.
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Table, CsvError> {
        let origin = origin.to_owned();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            // Rows of the wrong length are reported below with their line, not by the reader.
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let mut records = reader.records().map(|r| {
            // The reader refuses only what is not UTF-8, which a `&str` cannot hold.
            let record = r.expect("text that is UTF-8 reads as records");
            let line = record.position().map_or(0, |p| p.line() as usize);
            (line, record)
        });
        let Some((_, header)) = records.next() else {
            return Err(CsvError::Empty { origin });
        };
        let mut names = header.iter();
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
        for (line, cells) in records {
            if cells.iter().all(str::is_empty) {
                continue; // a line of spaces
            }
            if cells.len() != columns.len() + 1 {
                return Err(CsvError::ColumnCount {
                    origin,
                    line,
                    found: cells.len(),
                    expected: columns.len() + 1,
                });
            }
            let t_ms = parse_timestamp(&cells[0]).ok_or_else(|| CsvError::BadTimestamp {
                origin: origin.clone(),
                line,
                value: cells[0].to_owned(),
            })?;
            let mut values = Vec::with_capacity(columns.len());
            for (c, raw) in cells.iter().skip(1).enumerate() {
                values.push(parse_value(raw).ok_or_else(|| CsvError::NotANumber {
                    origin: origin.clone(),
                    line,
                    column: columns[c].clone(),
                    value: raw.to_owned(),
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
    pub(crate) fn column(&self, name: &str) -> Option<usize> {
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

/// `YYYY-MM-DD HH:MM:SS`, `T` or `t` between date and time, and any fraction of a second.
const DATE_TIME: &[BorrowedFormatItem<'_>] = format_description!(
    "[year]-[month]-[day][first [ ][T][t]][hour]:[minute]:[second][optional [.[subsecond]]]"
);
/// The same with a numeric offset (`+02:00`).
const DATE_TIME_OFFSET: &[BorrowedFormatItem<'_>] = format_description!(
    "[year]-[month]-[day][first [ ][T][t]][hour]:[minute]:[second][optional [.[subsecond]]][offset_hour sign:mandatory]:[offset_minute]"
);
const FORMATTED: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

/// Unix milliseconds of a timestamp in any of the accepted forms, or `None`. Fractions of a
/// millisecond are rounded to the nearest millisecond.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let nanos = if !s.contains(['-', ':']) || (s.starts_with('-') && !s[1..].contains(['-', ':'])) {
        // Unix seconds, possibly fractional or negative, within the calendar's years.
        let secs: f64 = s.parse().ok()?;
        let ms = (secs * 1000.0).round();
        if !ms.is_finite() || ms.abs() >= 1e17 {
            return None;
        }
        let ms = ms as i64;
        OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok()?;
        return Some(ms);
    } else if let Some(utc) = s.strip_suffix(['Z', 'z']) {
        PrimitiveDateTime::parse(utc, DATE_TIME)
            .ok()?
            .assume_utc()
            .unix_timestamp_nanos()
    } else if let Ok(t) = PrimitiveDateTime::parse(s, DATE_TIME) {
        t.assume_utc().unix_timestamp_nanos()
    } else {
        OffsetDateTime::parse(s, DATE_TIME_OFFSET)
            .ok()?
            .unix_timestamp_nanos()
    };
    Some((nanos + 500_000).div_euclid(1_000_000) as i64)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC), with `.mmm` when the time has milliseconds: the form canopy
/// writes in its CSV output, which [`parse_timestamp`] reads back. A time beyond the years
/// `parse_timestamp` reads (which no parsed row can hold) is written as Unix seconds.
pub fn format_timestamp(t_ms: i64) -> String {
    let ms = t_ms.rem_euclid(1000);
    let Ok(t) = OffsetDateTime::from_unix_timestamp(t_ms.div_euclid(1000)) else {
        return format!("{}.{ms:03}", t_ms.div_euclid(1000));
    };
    let base = t.format(FORMATTED).expect("a UTC time in range formats");
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
        // RFC 4180 quoting: a quoted name or cell may hold a comma and a doubled quote
        let t = Table::parse(
            "timestamp,\"a,\"\"b\"\"\"\n\"2014-04-01 00:00:00\",\"1.5\"\n",
            "q.csv",
        )
        .expect("parses");
        assert_eq!(t.columns, ["a,\"b\""]);
        assert_eq!(t.rows[0].values, [Some(1.5)]);
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
