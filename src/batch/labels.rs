//! Labelled anomaly windows in NAB's `windows.json` format, and the summary `replay --labels`
//! prints: how many windows the detector flagged, and how many flagged steps fell outside all
//! windows.
//!
//! NAB's rules, followed here: the file's key is matched as a path suffix of the input (NAB keys
//! are `dir/file.csv` relative to its data folder); the first 15% of the file's rows, at most 750,
//! are a probation period that is neither scored nor counted; a window is detected when a flagged
//! step lies inside it (both ends included).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::source::csv::{format_timestamp, parse_timestamp};

#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("cannot read labels {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "labels {path} are not NAB windows ({{\"dir/file.csv\": [[\"start\", \"end\"], ...]}}): {message}"
    )]
    Format { path: String, message: String },
    #[error("labels {path}, entry `{key}`: `{value}` is not a timestamp")]
    BadTimestamp {
        path: String,
        key: String,
        value: String,
    },
    #[error("labels {path} have no entry for {input} (no key is a suffix of its path)")]
    NoEntry { path: String, input: String },
}

/// One labelled window, both ends included, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Reads `path` and returns the windows of the entry whose key is a path suffix of `input`
/// (the longest such key, should several match).
pub fn windows_for(path: &Path, input: &Path) -> Result<Vec<Window>, LabelsError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LabelsError::Read {
        path: p.clone(),
        source,
    })?;
    let all: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(&text).map_err(|e| LabelsError::Format {
            path: p.clone(),
            message: e.to_string(),
        })?;
    let (key, pairs) = all
        .iter()
        .filter(|(k, _)| input.ends_with(Path::new(k.as_str())))
        .max_by_key(|(k, _)| k.len())
        .ok_or_else(|| LabelsError::NoEntry {
            path: p.clone(),
            input: input.display().to_string(),
        })?;
    let time = |value: &str| {
        parse_timestamp(value).ok_or_else(|| LabelsError::BadTimestamp {
            path: p.clone(),
            key: key.clone(),
            value: value.to_owned(),
        })
    };
    pairs
        .iter()
        .map(|(s, e)| {
            Ok(Window {
                start_ms: time(s)?,
                end_ms: time(e)?,
            })
        })
        .collect()
}

/// How a replay did against the labelled windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub(crate) windows: usize,
    pub(crate) detected: usize,
    pub(crate) false_positives: usize,
    /// Steps scored after probation, and how many of them were flagged.
    pub(crate) scored_steps: usize,
    pub(crate) flagged_steps: usize,
    /// Rows of the file in probation, and the first time counted.
    pub(crate) probation_rows: usize,
    pub(crate) counted_from_ms: Option<i64>,
}

/// NAB's probation: the first 15% of the rows, at most 750.
pub(crate) fn probation_rows(n_rows: usize) -> usize {
    (n_rows * 15 / 100).min(750)
}

/// Scores a replay: `row_times` are the input's (sorted) row timestamps, `steps` each evaluation
/// step's time and whether it was flagged (`None` before the first model).
pub fn summarise(windows: &[Window], row_times: &[i64], steps: &[(i64, Option<bool>)]) -> Summary {
    let probation = probation_rows(row_times.len());
    let counted_from_ms = row_times.get(probation).copied();
    let counted = |t: i64| counted_from_ms.is_some_and(|from| t >= from);
    let inside = |w: &Window, t: i64| w.start_ms <= t && t <= w.end_ms;
    let mut detected = vec![false; windows.len()];
    let (mut scored_steps, mut flagged_steps, mut false_positives) = (0, 0, 0);
    for &(t, flagged) in steps {
        let Some(flagged) = flagged else { continue };
        if !counted(t) {
            continue;
        }
        scored_steps += 1;
        if !flagged {
            continue;
        }
        flagged_steps += 1;
        let mut hit = false;
        for (k, w) in windows.iter().enumerate() {
            if inside(w, t) {
                detected[k] = true;
                hit = true;
            }
        }
        if !hit {
            false_positives += 1;
        }
    }
    Summary {
        windows: windows.len(),
        detected: detected.iter().filter(|d| **d).count(),
        false_positives,
        scored_steps,
        flagged_steps,
        probation_rows: probation,
        counted_from_ms,
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "windows detected {}/{}, false positives {}, flagged {} of {} scored steps (probation: first {} rows",
            self.detected,
            self.windows,
            self.false_positives,
            self.flagged_steps,
            self.scored_steps,
            self.probation_rows
        )?;
        match self.counted_from_ms {
            Some(t) => write!(f, ", counted from {})", format_timestamp(t)),
            None => write!(f, ")"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probation_is_fifteen_percent_capped_at_750() {
        assert_eq!(probation_rows(100), 15);
        assert_eq!(probation_rows(4032), 604);
        assert_eq!(probation_rows(10_000), 750);
    }

    #[test]
    fn detections_and_false_positives_after_probation() {
        // 20 rows, one a minute: probation is 3 rows, counting starts at t = 3 min.
        let min = 60_000;
        let rows: Vec<i64> = (0..20).map(|k| k * min).collect();
        let windows = [
            Window {
                start_ms: 5 * min,
                end_ms: 7 * min,
            },
            Window {
                start_ms: 12 * min,
                end_ms: 13 * min,
            },
        ];
        let flag = |k: i64, f: bool| (k * min, Some(f));
        let steps = [
            (0, None),
            flag(1, true), // in probation: not counted
            flag(3, false),
            flag(4, true), // false positive
            flag(7, true), // detects the first window (end included)
            flag(6, true), // same window again
            flag(10, false),
            flag(15, true), // false positive
        ];
        let s = summarise(&windows, &rows, &steps);
        assert_eq!((s.windows, s.detected, s.false_positives), (2, 1, 2), "{s}");
        assert_eq!((s.scored_steps, s.flagged_steps), (6, 4));
        assert_eq!(s.counted_from_ms, Some(3 * min));
    }

    #[test]
    fn the_key_is_matched_as_a_path_suffix() {
        let dir = std::env::temp_dir().join(format!("canopy-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("windows.json");
        std::fs::write(
            &path,
            r#"{"a/x.csv": [["2014-04-01 00:00:00.000000", "2014-04-01 01:00:00.000000"]],
                "b/x.csv": [], "x.csv": []}"#,
        )
        .expect("write");
        let w = windows_for(&path, Path::new("/data/nab/a/x.csv")).expect("entry");
        assert_eq!(
            w,
            [Window {
                start_ms: 1_396_310_400_000,
                end_ms: 1_396_314_000_000
            }]
        );
        assert!(
            windows_for(&path, Path::new("/data/b/x.csv"))
                .expect("entry")
                .is_empty()
        );
        let e = windows_for(&path, Path::new("/data/ax.csv")).expect_err("no entry");
        assert!(e.to_string().contains("no entry"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
