//! The Numenta Anomaly Benchmark score of a detector's per-row anomaly scores against labelled
//! windows, following NAB 1.1's scorer: what `examples/nab_score.rs` prints and
//! `benches/compare/nab_replay.sh` averages over seeds.
//!
//! This module owns the scoring only, pure computation: files come in as row timestamps, one
//! score per row and [`labels::Window`]s; reading them is the caller's job. The rules:
//!
//! - the first rows of a file are its probation ([`labels::probation_rows`]): never scored;
//! - a row inside a window (width `w` rows, right edge at row `R`) is worth
//!   `tp * scaled_sigmoid(-(R - i + 1) / w) / scaled_sigmoid(-1)`: about `tp` at the window's
//!   first row, less the later the detection;
//! - a row outside every window costs `fp` before the first window has ended, and
//!   `fp * scaled_sigmoid((i - R) / (w - 1))` after one (`R`, `w` those of the latest window to
//!   have ended): little just after a window, `fp` far from it;
//! - at a threshold `t`, every row after probation whose score is `>= t` is a detection. Each
//!   window adds the largest weight among its detections, or `-fn` when it has none; each
//!   detection outside the windows adds its (negative) weight;
//! - one threshold serves the whole corpus, per [`Profile`]: the one with the largest raw score,
//!   found by sweeping every distinct score from the highest down ([`corpus_score`]);
//! - the normalised score is `100 * (raw - null) / (perfect - null)`, `perfect` being `tp` per
//!   window and `null` the best a constant detector gets (nothing or everything detected).
//!
//! [`row_scores`] maps a replay's per-step output onto the file's rows, causally.

use super::labels::{self, Window};

#[derive(Debug, thiserror::Error)]
pub enum NabError {
    #[error("{file}: {rows} rows but {scores} scores; the scorer needs one score per row")]
    Length {
        file: String,
        rows: usize,
        scores: usize,
    },
    #[error(
        "{file}: the timestamp of row {row} is earlier than the one before it; rows must be in time order"
    )]
    Unsorted { file: String, row: usize },
    #[error("{file}: row {row} has the score {score}, not a finite number")]
    NotFinite {
        file: String,
        row: usize,
        score: f64,
    },
}

/// A NAB application profile: the weights of a true positive, a false negative (a missed
/// window) and a false positive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub(crate) tp: f64,
    pub(crate) fn_weight: f64,
    pub(crate) fp: f64,
}

pub(crate) const STANDARD: Profile = Profile {
    name: "standard",
    tp: 1.0,
    fn_weight: 1.0,
    fp: 0.11,
};

pub(crate) const REWARD_LOW_FP_RATE: Profile = Profile {
    name: "reward_low_FP_rate",
    tp: 1.0,
    fn_weight: 1.0,
    fp: 0.22,
};

pub(crate) const REWARD_LOW_FN_RATE: Profile = Profile {
    name: "reward_low_FN_rate",
    tp: 1.0,
    fn_weight: 2.0,
    fp: 0.11,
};

/// NAB's three profiles, standard first.
pub const PROFILES: [Profile; 3] = [STANDARD, REWARD_LOW_FP_RATE, REWARD_LOW_FN_RATE];

/// NAB's weighting curve of a relative position `y`: `2 / (1 + exp(5y)) - 1`, from 1 (far
/// before) through 0 (at `y = 0`) to -1, and exactly -1 past `y = 3`.
pub(crate) fn scaled_sigmoid(y: f64) -> f64 {
    if y > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// Where a row lies, with its weight before the profile's factor (`tp` inside a window, `fp`
/// outside).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    Window { index: usize, unit: f64 },
    Outside { unit: f64 },
}

/// One data file ready to score: its rows' scores, probation, and each row's place relative to
/// the labelled windows.
#[derive(Debug, Clone)]
pub struct FileScores {
    name: String,
    scores: Vec<f64>,
    windows: usize,
    probation: usize,
    places: Vec<Place>,
}

impl FileScores {
    /// `row_times_ms` are every row of the file in file order (duplicated timestamps included,
    /// but never going back in time), `scores` one per row (a row without a score should be given
    /// 0), `windows` the file's labelled windows, both ends included.
    ///
    /// A window's width is the number of rows whose timestamp lies in it. Windows are expected
    /// not to overlap, as NAB's do; should they, a row belongs to the earliest-starting window
    /// holding it. A window holding no row can only be missed.
    pub fn new(
        name: impl Into<String>,
        row_times_ms: &[i64],
        scores: Vec<f64>,
        windows: &[Window],
    ) -> Result<Self, NabError> {
        let name = name.into();
        if row_times_ms.len() != scores.len() {
            return Err(NabError::Length {
                file: name,
                rows: row_times_ms.len(),
                scores: scores.len(),
            });
        }
        if let Some(row) = (1..row_times_ms.len()).find(|&i| row_times_ms[i] < row_times_ms[i - 1])
        {
            return Err(NabError::Unsorted { file: name, row });
        }
        if let Some((row, &score)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
            return Err(NabError::NotFinite {
                file: name,
                row,
                score,
            });
        }
        let mut windows = windows.to_vec();
        windows.sort_by_key(|w| (w.start_ms, w.end_ms));
        let inside = |w: &Window, t: i64| w.start_ms <= t && t <= w.end_ms;
        // Each window's width and right edge (the last row inside it); rows are in time order.
        let extent: Vec<Option<(usize, usize)>> = windows
            .iter()
            .map(|w| {
                let first = row_times_ms.partition_point(|&t| t < w.start_ms);
                let past = row_times_ms.partition_point(|&t| t <= w.end_ms);
                (past > first).then(|| (past - first, past - 1))
            })
            .collect();
        // (right edge, width) of the windows holding rows, by right edge: the latest window to
        // have ended before row i is the last one whose right edge is below i.
        let mut ends: Vec<(usize, usize)> = extent.iter().flatten().map(|&(w, r)| (r, w)).collect();
        ends.sort_unstable();
        let max_tp = scaled_sigmoid(-1.0);
        let mut ended = 0;
        let places = row_times_ms
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                while ended < ends.len() && ends[ended].0 < i {
                    ended += 1;
                }
                let holding = windows
                    .iter()
                    .zip(&extent)
                    .enumerate()
                    .find(|(_, (w, _))| inside(w, t));
                match holding {
                    Some((index, (_, Some((width, right))))) => {
                        let y = -((right + 1 - i) as f64) / *width as f64;
                        Place::Window {
                            index,
                            unit: scaled_sigmoid(y) / max_tp,
                        }
                    }
                    // A row inside a window always gives it an extent; kept total regardless.
                    Some((_, (_, None))) | None => {
                        let unit = match ended.checked_sub(1).map(|k| ends[k]) {
                            Some((right, width)) if width > 1 => {
                                scaled_sigmoid((i - right) as f64 / (width - 1) as f64)
                            }
                            // Before any window, or after a one-row window (NAB would divide by
                            // zero there): as far from a window as can be.
                            _ => -1.0,
                        };
                        Place::Outside { unit }
                    }
                }
            })
            .collect();
        Ok(Self {
            name,
            probation: labels::probation_rows(row_times_ms.len()),
            scores,
            windows: windows.len(),
            places,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of labelled windows.
    pub fn windows(&self) -> usize {
        self.windows
    }

    /// Each row's weight under `p`, were it detected: positive inside a window, negative outside
    /// (probation rows included, though they never count).
    #[cfg(test)]
    fn weights(&self, p: &Profile) -> Vec<f64> {
        (0..self.places.len())
            .map(|i| self.weight(i, p).1)
            .collect()
    }

    /// Row `i`'s window, if any, and its weight under `p`.
    fn weight(&self, i: usize, p: &Profile) -> (Option<usize>, f64) {
        match self.places[i] {
            Place::Window { index, unit } => (Some(index), p.tp * unit),
            Place::Outside { unit } => (None, p.fp * unit),
        }
    }

    /// The scored rows: every row after probation.
    fn scored(&self) -> std::ops::Range<usize> {
        self.probation.min(self.places.len())..self.places.len()
    }
}

/// A corpus's score under one profile, at the threshold best for the whole corpus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CorpusScore {
    /// The raw score at `threshold`: the sum over all windows and outside detections.
    pub raw: f64,
    /// Rows whose score is `>= threshold` are detections; `f64::INFINITY` when detecting nothing
    /// scores best.
    pub threshold: f64,
    /// The raw score of a constant detector: the better of detecting nothing and everything.
    pub null: f64,
    /// The raw score of a perfect detector: `tp` per window.
    pub perfect: f64,
    /// `100 * (raw - null) / (perfect - null)`; NaN when `perfect == null` (a corpus without
    /// windows), where it is not defined.
    pub normalised: f64,
    pub(crate) windows: usize,
}

/// Scores `files` under `p` at the single threshold that maximises their summed raw score.
///
/// All scored rows of all files are sorted once by score, highest first; each distinct score is
/// a candidate threshold, and lowering the threshold to it adds its rows as detections: an outside
/// row adds its weight, a window row raises its window's best weight (from `-fn` when it is the
/// window's first detection). Ties between thresholds go to the highest, as in NAB, so detecting
/// nothing wins a tie with anything else.
pub fn corpus_score(files: &[FileScores], p: &Profile) -> CorpusScore {
    let windows: usize = files.iter().map(|f| f.windows).sum();
    // (score, window across the corpus, weight) of every scored row.
    let mut points: Vec<(f64, Option<usize>, f64)> = Vec::new();
    let mut offset = 0;
    for f in files {
        for i in f.scored() {
            let (window, weight) = f.weight(i, p);
            points.push((f.scores[i], window.map(|k| offset + k), weight));
        }
        offset += f.windows;
    }
    points.sort_by(|a, b| b.0.total_cmp(&a.0));

    let nothing = -p.fn_weight * windows as f64;
    let mut best: Vec<Option<f64>> = vec![None; windows];
    let mut total = nothing;
    let (mut raw, mut threshold) = (nothing, f64::INFINITY);
    let mut k = 0;
    while k < points.len() {
        let score = points[k].0;
        while k < points.len() && points[k].0 == score {
            let (_, window, weight) = points[k];
            match window {
                None => total += weight,
                Some(w) => match best[w] {
                    None => {
                        total += p.fn_weight + weight;
                        best[w] = Some(weight);
                    }
                    Some(b) if weight > b => {
                        total += weight - b;
                        best[w] = Some(weight);
                    }
                    Some(_) => {}
                },
            }
            k += 1;
        }
        if total > raw {
            raw = total;
            threshold = score;
        }
    }
    // After the last threshold, every scored row is a detection.
    let everything = total;
    let null = nothing.max(everything);
    let perfect = p.tp * windows as f64;
    let normalised = if perfect > null {
        100.0 * (raw - null) / (perfect - null)
    } else {
        f64::NAN
    };
    CorpusScore {
        raw,
        threshold,
        null,
        perfect,
        normalised,
        windows,
    }
}

/// One file's part of a corpus score, at a given threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FileBreakdown {
    pub windows: usize,
    /// Windows with at least one detection after probation.
    pub detected: usize,
    /// Detections after probation outside every window.
    pub false_positives: usize,
    /// The file's raw score: its windows' best weights (or `-fn`) plus its false positives'.
    pub raw: f64,
}

/// How `file` does under `p` when rows scoring `>= threshold` are detections.
pub fn file_breakdown(file: &FileScores, p: &Profile, threshold: f64) -> FileBreakdown {
    let mut best: Vec<Option<f64>> = vec![None; file.windows];
    let (mut false_positives, mut outside) = (0, 0.0);
    for i in file.scored().filter(|&i| file.scores[i] >= threshold) {
        match file.weight(i, p) {
            (None, weight) => {
                false_positives += 1;
                outside += weight;
            }
            (Some(w), weight) => {
                best[w] = Some(best[w].map_or(weight, |b: f64| b.max(weight)));
            }
        }
    }
    let found: f64 = best.iter().map(|b| b.unwrap_or(-p.fn_weight)).sum();
    FileBreakdown {
        windows: file.windows,
        detected: best.iter().flatten().count(),
        false_positives,
        raw: found + outside,
    }
}

/// Maps a replay's output onto the file's rows: each row gets the score of the latest step at or
/// before its timestamp, 0 when there is none or that step's score is empty (no model yet). Causal:
/// a row never sees a later step. Of several steps at one time, the last given wins.
pub fn row_scores(row_times_ms: &[i64], steps: &[(i64, Option<f64>)]) -> Vec<f64> {
    let mut steps = steps.to_vec();
    steps.sort_by_key(|s| s.0); // stable: equal times keep their order
    row_times_ms
        .iter()
        .map(|&t| {
            let upto = steps.partition_point(|s| s.0 <= t);
            upto.checked_sub(1).and_then(|k| steps[k].1).unwrap_or(0.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // scaled_sigmoid(y) = 2 / (1 + e^(5y)) - 1 = -tanh(5y / 2): the tanh values below are the
    // hand-worked figures, tanh(x) = (e^2x - 1) / (e^2x + 1).
    // tanh(2.5) = (e^5 - 1) / (e^5 + 1) = 147.41316 / 149.41316 = 0.9866143
    const TANH_2_5: f64 = 0.986_614_298;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    const MIN: i64 = 60_000;

    /// A file of `n` rows one minute apart, windows given as row ranges (both ends included).
    fn file(name: &str, n: i64, scores: &[(usize, f64)], windows: &[(i64, i64)]) -> FileScores {
        let times: Vec<i64> = (0..n).map(|k| k * MIN).collect();
        let mut s = vec![0.0; n as usize];
        for &(i, v) in scores {
            s[i] = v;
        }
        let w: Vec<Window> = windows
            .iter()
            .map(|&(a, b)| Window {
                start_ms: a * MIN,
                end_ms: b * MIN,
            })
            .collect();
        FileScores::new(name, &times, s, &w).expect("valid file")
    }

    #[test]
    fn sigmoid_values() {
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        // y = -1: 2 / (1 + e^-5) - 1 = 2 / 1.0067379 - 1 = 0.9866143.
        assert!(close(scaled_sigmoid(-1.0), TANH_2_5));
        // y = 0.5: 2 / (1 + e^2.5) - 1 = 2 / 13.182494 - 1 = -0.8482836.
        assert!(close(scaled_sigmoid(0.5), -0.848_283_6));
        // y = 3: 2 / (1 + e^15) - 1 = 2 / 3269018.4 - 1 = -0.99999939; past 3, exactly -1.
        assert!(close(scaled_sigmoid(3.0), -0.999_999_39));
        assert_eq!(scaled_sigmoid(3.000_001), -1.0);
        assert_eq!(scaled_sigmoid(100.0), -1.0);
    }

    // The files below have 20 rows: probation is floor(0.15 * 20) = 3 rows (0..=2). The window
    // covers rows 10..=14: width w = 5, right edge R = 14.

    #[test]
    fn a_window_found_early_is_worth_more() {
        // Row 10: y = -(14 - 10 + 1) / 5 = -1, weight tp * s(-1) / s(-1) = 1.
        let first = file("a", 20, &[(10, 1.0)], &[(10, 14)]);
        let b = file_breakdown(&first, &STANDARD, 0.5);
        assert_eq!((b.windows, b.detected, b.false_positives), (1, 1, 0));
        assert!(close(b.raw, 1.0), "{b:?}");
        // Row 12: y = -3/5, s = tanh(1.5) = 0.9051483, / 0.9866143 = 0.9174287.
        let mid = file("a", 20, &[(12, 1.0)], &[(10, 14)]);
        assert!(close(file_breakdown(&mid, &STANDARD, 0.5).raw, 0.917_428_7));
        // Row 14: y = -1/5, s = tanh(0.5) = 0.4621172, / 0.9866143 = 0.4683868.
        let last = file("a", 20, &[(14, 1.0)], &[(10, 14)]);
        let b = file_breakdown(&last, &STANDARD, 0.5);
        assert_eq!(b.detected, 1);
        assert!(close(b.raw, 0.468_386_8), "{b:?}");
        // The weights themselves: rows 10 and 14, and a row before the window (-fp).
        let w = last.weights(&STANDARD);
        assert!(close(w[10], 1.0) && close(w[14], 0.468_386_8) && close(w[5], -0.11));
    }

    #[test]
    fn false_positives_cost_fp_before_any_window_and_less_just_after_one() {
        // Row 5, before the window: -0.11; the window is missed: -1.
        let before = file("a", 20, &[(5, 1.0)], &[(10, 14)]);
        let b = file_breakdown(&before, &STANDARD, 0.5);
        assert_eq!((b.detected, b.false_positives), (0, 1));
        assert!(close(b.raw, -1.11), "{b:?}");
        // Row 15: y = |14 - 15| / (5 - 1) = 0.25, s = -tanh(0.625) = -0.5545997,
        // weight 0.11 * -0.5545997 = -0.0610060; with the miss, -1.0610060.
        let after = file("a", 20, &[(15, 1.0)], &[(10, 14)]);
        let b = file_breakdown(&after, &STANDARD, 0.5);
        assert_eq!(b.false_positives, 1);
        assert!(close(b.raw, -1.061_006_0), "{b:?}");
        // Row 19: y = 5/4 = 1.25, s = -tanh(3.125) = -0.9961465: almost the full cost.
        // reward_low_FP_rate doubles it: 0.22 * -0.9961465 = -0.2191522.
        let far = file("a", 20, &[(19, 1.0)], &[(10, 14)]);
        assert!(close(
            file_breakdown(&far, &REWARD_LOW_FP_RATE, 0.5).raw,
            -1.0 - 0.219_152_2
        ));
        // After a one-row window (w - 1 = 0), a false positive costs the full fp.
        let one = file("a", 20, &[(11, 1.0)], &[(10, 10)]);
        assert!(close(file_breakdown(&one, &STANDARD, 0.5).raw, -1.11));
    }

    #[test]
    fn probation_rows_are_ignored() {
        // Rows 0 (a would-be false positive) and 1 (the whole first window, 1..=1) are detected
        // in probation and not counted; row 10 finds the second window.
        let f = file(
            "a",
            20,
            &[(0, 1.0), (1, 1.0), (10, 1.0)],
            &[(1, 1), (10, 14)],
        );
        assert_eq!(f.probation, 3);
        let b = file_breakdown(&f, &STANDARD, 0.5);
        assert_eq!((b.windows, b.detected, b.false_positives), (2, 1, 0));
        // 1 (second window) - 1 (the first, missed).
        assert!(close(b.raw, 0.0), "{b:?}");
    }

    #[test]
    fn only_the_best_detection_of_a_window_counts() {
        // Rows 10, 12 and 14 all detected: the window adds max(1, 0.917, 0.468) = 1, not the sum.
        let f = file("a", 20, &[(10, 1.0), (12, 1.0), (14, 1.0)], &[(10, 14)]);
        let b = file_breakdown(&f, &STANDARD, 0.5);
        assert_eq!((b.detected, b.false_positives), (1, 0));
        assert!(close(b.raw, 1.0), "{b:?}");
        let c = corpus_score(&[f], &STANDARD);
        assert!(close(c.raw, 1.0) && c.threshold == 1.0, "{c:?}");
    }

    /// Two files of 40 rows (probation floor(0.15 * 40) = 6 rows), each with one window on rows
    /// 30..=34. File a finds its window at its first row with 0.9 but raises 20 false alarms
    /// (rows 6..=25, before the window) at 0.8; file b finds its window's first row at 0.7 only.
    fn two_files() -> [FileScores; 2] {
        let mut a: Vec<(usize, f64)> = (6..26).map(|i| (i, 0.8)).collect();
        a.push((30, 0.9));
        [
            file("a", 40, &a, &[(30, 34)]),
            file("b", 40, &[(30, 0.7)], &[(30, 34)]),
        ]
    }

    #[test]
    fn one_threshold_for_the_corpus_is_the_best_sum() {
        let files = two_files();
        // Raw score by threshold (standard profile, two windows, nothing detected: -2):
        //   0.9: a's window found, 1 instead of -1:           0
        //   0.8: 20 false positives before a window, -0.11 each: -2.2
        //   0.7: b's window found, +2:                          -0.2
        //   0:   everything; per file: window 1, rows 6..=29 before it 24 * -0.11 = -2.64,
        //        rows 35..=39 after it at y = 1/4 .. 5/4: 0.11 * -(tanh(0.625) + tanh(1.25)
        //        + tanh(1.875) + tanh(2.5) + tanh(3.125)) = 0.11 * -4.3396895 = -0.4773658:
        //        -2.1173658 per file, -4.2347317 for both.
        // Best: 0.9, with 0, although file b alone would rather have 0.7.
        let c = corpus_score(&files, &STANDARD);
        assert_eq!(c.threshold, 0.9);
        assert!(close(c.raw, 0.0), "{c:?}");
        assert_eq!(c.windows, 2);
        // null = max(-2, -4.2347317) = -2, perfect = 2: 100 * (0 + 2) / 4 = 50.
        assert!(close(c.null, -2.0) && close(c.perfect, 2.0));
        assert!(close(c.normalised, 50.0), "{c:?}");
        // The files' own parts at that threshold add up to the corpus's.
        let parts: Vec<FileBreakdown> = files
            .iter()
            .map(|f| file_breakdown(f, &STANDARD, c.threshold))
            .collect();
        assert_eq!((parts[0].detected, parts[0].false_positives), (1, 0));
        assert_eq!((parts[1].detected, parts[1].false_positives), (0, 0));
        assert!(close(parts[0].raw + parts[1].raw, c.raw));
        // reward_low_FN_rate: a miss costs 2, so finding a window gains 3 (from -2 to 1):
        //   nothing -4, 0.9: -1, 0.8: -3.2, 0.7: -0.2, everything: 2 * -2.1173658. Best 0.7.
        let c = corpus_score(&files, &REWARD_LOW_FN_RATE);
        assert_eq!(c.threshold, 0.7);
        assert!(close(c.raw, -0.2), "{c:?}");
    }

    #[test]
    fn a_perfect_detector_scores_100_and_a_constant_one_0() {
        // 20 rows, probation 3, the window on rows 4..=19: detecting everything gives the window
        // 1 and row 3 (before it) -0.11: 0.89 > -1 (nothing), so null = 0.89; perfect = 1.
        let perfect = file("p", 20, &[(4, 1.0)], &[(4, 19)]);
        let c = corpus_score(&[perfect], &STANDARD);
        assert!(close(c.null, 0.89) && close(c.perfect, 1.0), "{c:?}");
        assert!(close(c.normalised, 100.0), "{c:?}");
        let constant: Vec<(usize, f64)> = (0..20).map(|i| (i, 0.5)).collect();
        let c = corpus_score(&[file("c", 20, &constant, &[(4, 19)])], &STANDARD);
        assert!(close(c.raw, 0.89) && c.threshold == 0.5);
        assert!(close(c.normalised, 0.0), "{c:?}");
        // On the two files, where nothing (-2) beats everything (-4.23): the constant detector
        // keeps its threshold above all scores.
        let constant: Vec<(usize, f64)> = (0..40).map(|i| (i, 0.5)).collect();
        let files = [
            file("a", 40, &constant, &[(30, 34)]),
            file("b", 40, &constant, &[(30, 34)]),
        ];
        let c = corpus_score(&files, &STANDARD);
        assert_eq!(c.threshold, f64::INFINITY);
        assert!(close(c.raw, -2.0) && close(c.normalised, 0.0), "{c:?}");
    }

    #[test]
    fn without_windows_the_normalised_score_is_not_defined() {
        let f = file("n", 20, &[(10, 1.0)], &[]);
        let c = corpus_score(&[f], &STANDARD);
        // Nothing detected: 0 = perfect = null.
        assert_eq!((c.raw, c.perfect, c.null), (0.0, 0.0, 0.0));
        assert!(c.normalised.is_nan());
        let c = corpus_score(&[], &STANDARD);
        assert!(c.normalised.is_nan());
    }

    #[test]
    fn invalid_files_are_errors() {
        let w = [];
        let e = FileScores::new("x", &[0, 1], vec![0.0], &w).expect_err("length");
        assert!(e.to_string().contains("2 rows but 1 scores"), "{e}");
        let e = FileScores::new("x", &[0, 2, 1], vec![0.0; 3], &w).expect_err("order");
        assert!(e.to_string().contains("row 2"), "{e}");
        let e = FileScores::new("x", &[0, 1], vec![0.0, f64::NAN], &w).expect_err("nan");
        assert!(e.to_string().contains("row 1"), "{e}");
        // Duplicated timestamps are rows like any other: the window [1, 1] holds two rows.
        let f = FileScores::new(
            "x",
            &[0, 1, 1, 2],
            vec![0.0; 4],
            &[Window {
                start_ms: 1,
                end_ms: 1,
            }],
        )
        .expect("duplicates");
        // Row 1: y = -(2 - 1 + 1) / 2 = -1, weight 1; row 2: y = -1/2, tanh(1.25) / tanh(2.5)
        // = 0.8482836 / 0.9866143 = 0.8597926.
        let w = f.weights(&STANDARD);
        assert!(close(w[1], 1.0) && close(w[2], 0.859_792_6), "{w:?}");
    }

    #[test]
    fn row_scores_take_the_latest_step_at_or_before_each_row() {
        // Irregular rows, one duplicated; steps at their own times, one empty.
        let rows = [0, 10, 20, 20, 35, 50, 70];
        let steps = [
            (5, Some(0.3)),
            (20, None),
            (30, Some(0.8)),
            (50, Some(0.1)),
            (60, Some(0.9)),
        ];
        // 0: no step yet; 10: step 5; 20 (twice): the empty step 20; 35: step 30; 50: step 50
        // (at the row's own time); 70: step 60.
        assert_eq!(
            row_scores(&rows, &steps),
            [0.0, 0.3, 0.0, 0.0, 0.8, 0.1, 0.9]
        );
        assert!(row_scores(&rows, &[]).iter().all(|&s| s == 0.0));
    }
}
