//! Which points of a long series to draw: a few per pixel column, so a 100,000-row file draws as
//! fast and weighs as little as a 2,000-row one, and looks the same.
//!
//! In each column (a bucket of time one pixel wide) the first, last, lowest and highest point are
//! kept (the M4 choice: a line through them covers the pixels a line through all of them would),
//! and the first missing value (so a gap still breaks the line); then every point the caller must
//! keep (flagged steps, window edges). Pure computation over slices.

/// The indices of the points of `(times, values)` to draw on `columns` pixel columns spanning
/// `t0..=t1`, in time order, with every index of `keep`. `times` are sorted; a NaN value is a
/// gap. A series of at most four points per column is kept whole.
pub(crate) fn pick(
    times: &[i64],
    values: &[f64],
    (t0, t1): (i64, i64),
    columns: usize,
    keep: &[usize],
) -> Vec<usize> {
    let n = times.len().min(values.len());
    if n <= 4 * columns.max(1) {
        return (0..n).collect();
    }
    let span = i128::from(t1.saturating_sub(t0).max(0)) + 1;
    let column_of = |t: i64| {
        let offset = i128::from(t.saturating_sub(t0).max(0));
        ((offset * columns as i128 / span) as usize).min(columns - 1)
    };
    let mut picked: Vec<usize> = Vec::with_capacity(4 * columns + keep.len());
    let mut current = Bucket::new(0, column_of(times[0]));
    for i in 0..n {
        let column = column_of(times[i]);
        if column != current.column {
            current.flush(&mut picked);
            current = Bucket::new(i, column);
        }
        current.add(i, values[i]);
    }
    current.flush(&mut picked);
    picked.extend(keep.iter().copied().filter(|&i| i < n));
    picked.sort_unstable();
    picked.dedup();
    picked
}

/// The points of one pixel column seen so far.
struct Bucket {
    column: usize,
    first: usize,
    last: usize,
    low: Option<(usize, f64)>,
    high: Option<(usize, f64)>,
    gap: Option<usize>,
}

impl Bucket {
    fn new(first: usize, column: usize) -> Bucket {
        Bucket {
            column,
            first,
            last: first,
            low: None,
            high: None,
            gap: None,
        }
    }

    fn add(&mut self, i: usize, v: f64) {
        self.last = i;
        if v.is_nan() {
            self.gap.get_or_insert(i);
            return;
        }
        if self.low.is_none_or(|(_, low)| v < low) {
            self.low = Some((i, v));
        }
        if self.high.is_none_or(|(_, high)| v > high) {
            self.high = Some((i, v));
        }
    }

    fn flush(&self, picked: &mut Vec<usize>) {
        picked.push(self.first);
        picked.extend(self.low.map(|(i, _)| i));
        picked.extend(self.high.map(|(i, _)| i));
        picked.extend(self.gap);
        picked.push(self.last);
    }
}

/// The index of the last of `times` (sorted) at or before `t`, if any.
pub(crate) fn at_or_before(times: &[i64], t: i64) -> Option<usize> {
    times.partition_point(|&x| x <= t).checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_series_is_kept_whole() {
        let times: Vec<i64> = (0..40).collect();
        let values = vec![1.0; 40];
        assert_eq!(pick(&times, &values, (0, 39), 10, &[]).len(), 40);
    }

    #[test]
    fn each_column_keeps_its_ends_extremes_gap_and_the_points_asked_for() {
        // 1,000 points on 10 columns of 100: a spike at 250, a dip at 730, a gap at 512 and 513,
        // and point 901 asked for.
        let times: Vec<i64> = (0..1000).collect();
        let mut values: Vec<f64> = (0..1000).map(|i| (i % 7) as f64).collect();
        values[250] = 100.0;
        values[730] = -100.0;
        values[512] = f64::NAN;
        values[513] = f64::NAN;
        let picked = pick(&times, &values, (0, 999), 10, &[901]);
        assert!(picked.len() <= 10 * 5 + 1, "{}", picked.len());
        assert!(picked.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        for must in [0, 99, 100, 199, 250, 512, 730, 901, 999] {
            assert!(picked.contains(&must), "{must} missing from {picked:?}");
        }
        assert!(!picked.contains(&513), "one gap point per column is enough");
        // The lowest and highest of a column: column 3 (300..=399) has 0 at 301 and 6 at 300.
        assert!(picked.contains(&300) && picked.contains(&301));
    }

    #[test]
    fn the_point_at_or_before_a_time() {
        let times = [10, 20, 20, 30];
        assert_eq!(at_or_before(&times, 5), None);
        assert_eq!(at_or_before(&times, 10), Some(0));
        assert_eq!(at_or_before(&times, 25), Some(2));
        assert_eq!(at_or_before(&times, 99), Some(3));
    }
}
