//! The float arithmetic of PromQL's functions and aggregations, as Prometheus 2.42 does it.
//!
//! Owns every numeric algorithm whose rounding must match Prometheus bit for bit: the range
//! functions over one series' samples (`extrapolatedRate`, `instantValue`, `funcDeriv` with
//! `linearRegression`, the `*_over_time` functions), the Neumaier-compensated `kahanSumInc`, Go's
//! `math.Min`/`math.Max`, and the per-group accumulators of `aggregation`. The Go function names
//! are those of Prometheus 2.42's `promql/functions.go` and `promql/engine.go`; where this file
//! departs from Prometheus's documentation it is because the real 2.42 binary does (see the tests).
//! Knows nothing about labels, selectors or the store: it sees samples and values.

use crate::series::Sample;

use super::golang::{GoDate, go_int64};
use super::plan::{AggOp, DateFunc, RangeFunc};

/// Prometheus's `kahanSumInc`: Kahan summation with Neumaier's improvement.
#[inline]
pub(crate) fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Go's `math.Min`: -Inf wins over NaN, NaN over numbers, -0 over +0.
pub(crate) fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() { x } else { y }
    } else if x < y {
        x
    } else {
        y
    }
}

/// Go's `math.Max`: +Inf wins over NaN, NaN over numbers, +0 over -0.
pub(crate) fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() { y } else { x }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `time.Duration.Seconds()` for a duration given in ms: whole seconds plus the rest,
/// added the way Go adds them (it differs from `ms / 1000.0` in the last bit for some ranges).
pub(crate) fn duration_seconds(ms: i64) -> f64 {
    (ms / 1000) as f64 + ((ms % 1000) * 1_000_000) as f64 / 1e9
}

/// The window a range function sees: [start, end] in ms, both ends included.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: i64,
    pub(crate) end: i64,
}

/// Evaluates a range function over one series' samples (timestamps ascending, every sample
/// inside the window, staleness markers already left out). `params` are the function's scalar
/// arguments (φ; seconds ahead; the two factors), `t` the step's timestamp, which
/// `predict_linear` predicts from. `None`: the series yields no value.
pub(crate) fn range_func(
    func: RangeFunc,
    s: &[Sample],
    w: Window,
    params: &[f64],
    t: i64,
) -> Option<f64> {
    let last = s.last()?;
    let param = |i: usize| params.get(i).copied().unwrap_or(f64::NAN);
    match func {
        RangeFunc::Rate => extrapolated_rate(s, w, true, true),
        RangeFunc::Increase => extrapolated_rate(s, w, true, false),
        RangeFunc::Delta => extrapolated_rate(s, w, false, false),
        RangeFunc::Irate => instant_value(s, true),
        RangeFunc::Idelta => instant_value(s, false),
        RangeFunc::Deriv => deriv(s),
        RangeFunc::AvgOverTime => Some(avg_over_time(s)),
        RangeFunc::MinOverTime => Some(
            s.iter()
                .fold(s[0].v, |m, x| if x.v < m || m.is_nan() { x.v } else { m }),
        ),
        RangeFunc::MaxOverTime => Some(
            s.iter()
                .fold(s[0].v, |m, x| if x.v > m || m.is_nan() { x.v } else { m }),
        ),
        RangeFunc::SumOverTime => {
            let (sum, c) = s
                .iter()
                .fold((0.0, 0.0), |(sum, c), x| kahan_sum_inc(x.v, sum, c));
            Some(if sum.is_infinite() { sum } else { sum + c })
        }
        RangeFunc::CountOverTime => Some(s.len() as f64),
        RangeFunc::StddevOverTime => Some(stdvar_over_time(s).sqrt()),
        RangeFunc::StdvarOverTime => Some(stdvar_over_time(s)),
        RangeFunc::LastOverTime => Some(last.v),
        RangeFunc::PresentOverTime => Some(1.0),
        RangeFunc::Changes => Some(
            s.windows(2)
                .filter(|p| p[1].v != p[0].v && !(p[1].v.is_nan() && p[0].v.is_nan()))
                .count() as f64,
        ),
        RangeFunc::Resets => Some(s.windows(2).filter(|p| p[1].v < p[0].v).count() as f64),
        RangeFunc::QuantileOverTime => {
            let mut values: Vec<f64> = s.iter().map(|x| x.v).collect();
            Some(quantile(param(0), &mut values))
        }
        RangeFunc::PredictLinear => {
            if s.len() < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(s, t);
            Some(slope * param(0) + intercept)
        }
        RangeFunc::HoltWinters => holt_winters(s, param(0), param(1)),
    }
}

/// `quantile`: φ-quantile of `values` by linear interpolation between the closest ranks,
/// −Inf below 0 and +Inf above 1, NaN for no values; NaN values sort first.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = go_max(0.0, rank.floor());
    let upper = go_min(n - 1.0, lower + 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `funcHoltWinters`: double exponential smoothing; the evaluator has checked that both
/// factors lie strictly between 0 and 1.
fn holt_winters(s: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, s[0].v);
    let mut b = s[1].v - s[0].v;
    for (i, p) in s.iter().enumerate().skip(1) {
        let x = sf * p.v;
        // `calcTrendValue`: the first step keeps the initial trend.
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

/// One classic histogram bucket: its `le` bound and its cumulative count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    pub(crate) upper: f64,
    pub(crate) count: f64,
}

/// `bucketQuantile`: the φ-quantile of a classic histogram by linear interpolation inside the
/// bucket that holds the rank. Buckets may come in any order; equal bounds are merged, counts
/// made monotonic (they are not when buckets were scraped at different moments), a missing
/// `+Inf` bucket gives NaN, and a rank in the `+Inf` bucket the highest finite bound.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if buckets.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return f64::NAN;
    }
    // coalesceBuckets
    let mut merged = 0;
    for i in 1..buckets.len() {
        if buckets[i].upper == buckets[merged].upper {
            buckets[merged].count += buckets[i].count;
        } else {
            merged += 1;
            buckets[merged] = buckets[i];
        }
    }
    buckets.truncate(merged + 1);
    // ensureMonotonic
    let mut max = f64::NEG_INFINITY;
    for b in buckets.iter_mut() {
        if b.count > max {
            max = b.count;
        } else if b.count < max {
            b.count = max;
        }
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // sort.Search over all but the +Inf bucket: the first whose count reaches the rank.
    let b = buckets[..buckets.len() - 1]
        .iter()
        .position(|x| x.count >= rank)
        .unwrap_or(buckets.len() - 1);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].upper;
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return buckets[0].upper;
    }
    let end = buckets[b].upper;
    let mut count = buckets[b].count;
    let mut start = 0.0;
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    start + (end - start) * (rank / count)
}

/// `extrapolatedRate`: rate, increase and delta with extrapolation to the window's edges.
fn extrapolated_rate(s: &[Sample], w: Window, is_counter: bool, is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (first, last) = (s[0], s[s.len() - 1]);
    // Resets are added one by one after the difference, in sample order, as Go adds them.
    let mut result = last.v - first.v;
    if is_counter {
        let mut prev = first.v;
        for x in &s[1..] {
            if x.v < prev {
                result += prev;
            }
            prev = x.v;
        }
    }
    let mut to_start = (first.t - w.start) as f64 / 1000.0;
    let to_end = (w.end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_between = sampled / (s.len() - 1) as f64;
    if is_counter && result > 0.0 && first.v >= 0.0 {
        // A counter cannot have been below zero: do not extrapolate past its zero point.
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_between * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_between / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_between / 2.0
    };
    let mut factor = interval / sampled;
    if is_rate {
        factor /= duration_seconds(w.end - w.start);
    }
    Some(result * factor)
}

/// `instantValue`: irate and idelta from the last two samples.
fn instant_value(s: &[Sample], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (prev, last) = (s[s.len() - 2], s[s.len() - 1]);
    let mut v = if is_rate && last.v < prev.v {
        last.v
    } else {
        last.v - prev.v
    };
    let gap = last.t - prev.t;
    if gap == 0 {
        return None;
    }
    if is_rate {
        v /= gap as f64 / 1000.0;
    }
    Some(v)
}

/// `funcDeriv`: the slope of `linearRegression` with the first sample's time as intercept time.
fn deriv(s: &[Sample]) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    Some(linear_regression(s, s[0].t).0)
}

/// `linearRegression`: least-squares slope (per second) and the value at `intercept_t`, x in
/// seconds from `intercept_t`, every sum Kahan-compensated.
fn linear_regression(s: &[Sample], intercept_t: i64) -> (f64, f64) {
    let init_y = s[0].v;
    let mut const_y = true;
    let (mut n, mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    for (i, p) in s.iter().enumerate() {
        if const_y && i > 0 && p.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (p.t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_sum_inc(x, sx, cx);
        (sy, cy) = kahan_sum_inc(p.v, sy, cy);
        (sxy, cxy) = kahan_sum_inc(x * p.v, sxy, cxy);
        (sx2, cx2) = kahan_sum_inc(x * x, sx2, cx2);
    }
    if const_y {
        // A flat line has slope 0 exactly, not the rounding noise of the sums.
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov_xy = sxy - sx * sy / n;
    let var_x = sx2 - sx * sx / n;
    let slope = cov_xy / var_x;
    (slope, sy / n - slope * sx / n)
}

/// `funcAvgOverTime`: a compensated running mean, which cannot overflow where a sum would.
fn avg_over_time(s: &[Sample]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0f64, 0.0, 0.0);
    for p in s {
        count += 1.0;
        if mean.is_infinite() {
            if p.v.is_infinite() && (mean > 0.0) == (p.v > 0.0) {
                continue;
            }
            if !p.v.is_infinite() && !p.v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_sum_inc(p.v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

/// `funcStdvarOverTime`: Welford's algorithm with both running sums compensated. The usual
/// description says plain Welford; the 2.42 binary compensates (see `stddev_over_time_matches_2_42`).
fn stdvar_over_time(s: &[Sample]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in s {
        count += 1.0;
        let delta = p.v - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// One group of an aggregation, fed its series in label order (`aggregation` in engine.go).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accumulator {
    value: f64,
    mean: f64,
    count: u64,
}

impl Accumulator {
    /// The group's first series.
    pub fn new(op: &AggOp, v: f64) -> Accumulator {
        Accumulator {
            value: match op {
                AggOp::Stddev | AggOp::Stdvar => 0.0,
                AggOp::Group => 1.0,
                _ => v,
            },
            mean: v,
            count: 1,
        }
    }

    pub(crate) fn add(&mut self, op: &AggOp, v: f64) {
        match op {
            AggOp::Sum => self.value += v,
            AggOp::Count | AggOp::CountValues(_) => self.count += 1,
            // topk, bottomk and quantile keep their series elsewhere
            AggOp::Group | AggOp::Topk | AggOp::Bottomk | AggOp::Quantile => {}
            AggOp::Min => {
                if self.value > v || self.value.is_nan() {
                    self.value = v;
                }
            }
            AggOp::Max => {
                if self.value < v || self.value.is_nan() {
                    self.value = v;
                }
            }
            AggOp::Avg => {
                self.count += 1;
                let n = self.count as f64;
                if self.mean.is_infinite() {
                    if v.is_infinite() && (self.mean > 0.0) == (v > 0.0) {
                        return;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        return;
                    }
                }
                // Not compensated in 2.42's aggregation, unlike avg_over_time (checked against the
                // binary: see `avg_aggregation_matches_2_42`).
                self.mean += v / n - self.mean / n;
            }
            AggOp::Stddev | AggOp::Stdvar => {
                self.count += 1;
                let delta = v - self.mean;
                self.mean += delta / self.count as f64;
                self.value += delta * (v - self.mean);
            }
        }
    }

    pub(crate) fn finish(&self, op: &AggOp) -> f64 {
        match op {
            AggOp::Sum | AggOp::Min | AggOp::Max | AggOp::Group => self.value,
            AggOp::Topk | AggOp::Bottomk | AggOp::Quantile => self.value,
            AggOp::Count | AggOp::CountValues(_) => self.count as f64,
            AggOp::Avg => self.mean,
            AggOp::Stddev => (self.value / self.count as f64).sqrt(),
            AggOp::Stdvar => self.value / self.count as f64,
        }
    }
}

/// A date function of Unix seconds `v`, in UTC: `time.Unix(int64(v), 0).UTC()` as Go computes
/// it, so that NaN, infinities and times beyond Go's range give Prometheus's answers.
pub(crate) fn date_field(f: DateFunc, v: f64) -> f64 {
    let d = GoDate::from_unix(go_int64(v));
    (match f {
        DateFunc::DayOfMonth => d.day,
        DateFunc::DayOfWeek => d.weekday,
        DateFunc::DayOfYear => d.year_day,
        DateFunc::DaysInMonth => d.days_in_month(),
        DateFunc::Hour => d.hour,
        DateFunc::Minute => d.minute,
        DateFunc::Month => d.month,
        DateFunc::Year => d.year,
    }) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(step_ms: i64, values: &[f64]) -> Vec<Sample> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample {
                t: i as i64 * step_ms,
                v,
            })
            .collect()
    }

    fn apply(f: RangeFunc, s: &[Sample], w: Window) -> Option<f64> {
        range_func(f, s, w, &[], w.end)
    }

    fn win(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    fn agg(op: AggOp, vs: &[f64]) -> f64 {
        let mut a = Accumulator::new(&op, vs[0]);
        for &v in &vs[1..] {
            a.add(&op, v);
        }
        a.finish(&op)
    }

    // The expected values below were printed by `promtool test rules` of Debian's Prometheus
    // 2.42 for series at a 1m interval (values '7.2 8.8 7.1 9.2 3.9 8.0 4.4' etc.).

    #[test]
    fn sum_over_time_is_neumaier_compensated() {
        // 1e100 + 1 - 1e100: a plain sum gives 0, 2.42 gives 1.
        let s = series(60_000, &[1e100, 1.0, -1e100]);
        assert_eq!(
            apply(RangeFunc::SumOverTime, &s, win(0, 600_000)),
            Some(1.0)
        );
        let s = series(60_000, &[1e16, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(
            apply(RangeFunc::SumOverTime, &s, win(0, 600_000)),
            Some(10_000_000_000_000_004.0)
        );
    }

    #[test]
    fn avg_over_time_matches_2_42() {
        let s = series(60_000, &[7.2, 8.8, 7.1, 9.2, 3.9, 8.0, 4.4]);
        // an uncompensated running mean gives 6.942857142857142
        assert_eq!(
            apply(RangeFunc::AvgOverTime, &s, win(0, 600_000)),
            Some(6.942857142857144)
        );
        let s = series(60_000, &[1e16, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(
            apply(RangeFunc::AvgOverTime, &s, win(0, 600_000)),
            Some(2_000_000_000_000_000.5)
        );
    }

    #[test]
    fn stddev_over_time_matches_2_42() {
        let s = series(60_000, &[7.2, 8.8, 7.1, 9.2, 3.9, 8.0, 4.4]);
        // plain Welford gives 1.907771431994591; 2.42 compensates both sums
        assert_eq!(
            apply(RangeFunc::StddevOverTime, &s, win(0, 600_000)),
            Some(1.9077714319945913)
        );
        let v = apply(RangeFunc::StdvarOverTime, &s, win(0, 600_000)).unwrap_or(0.0);
        assert!((v - 1.9077714319945913f64.powi(2)).abs() < 1e-12);
    }

    #[test]
    fn avg_aggregation_matches_2_42() {
        // avg(g) over three series 5.3, 4.1, 2.4: 2.42 answered 3.9333333333333327; a
        // compensated running mean would give 3.933333333333333 in every order.
        assert_eq!(agg(AggOp::Avg, &[5.3, 4.1, 2.4]), 3.9333333333333327);
        assert_eq!(agg(AggOp::Avg, &[4.6, 4.8, 1.6]), 3.666666666666666);
        // mean of 1, 2, 3, 4 = 2.5
        assert_eq!(agg(AggOp::Avg, &[1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(agg(AggOp::Avg, &[f64::INFINITY, 1.0]), f64::INFINITY);
    }

    #[test]
    fn aggregations_by_hand() {
        let vs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(agg(AggOp::Sum, &vs), 40.0);
        assert_eq!(agg(AggOp::Count, &vs), 8.0);
        assert_eq!(agg(AggOp::Min, &vs), 2.0);
        assert_eq!(agg(AggOp::Max, &vs), 9.0);
        // mean 5, squared deviations 9+1+1+1+0+0+4+16 = 32, /8 = 4, sqrt = 2
        assert_eq!(agg(AggOp::Stddev, &vs), 2.0);
        assert_eq!(agg(AggOp::Stddev, &[3.0]), 0.0);
        // NaN first is replaced by min/max, as engine.go does
        assert_eq!(agg(AggOp::Min, &[f64::NAN, 3.0, 1.0]), 1.0);
        assert_eq!(agg(AggOp::Max, &[f64::NAN, 3.0, 1.0]), 3.0);
    }

    #[test]
    fn deriv_matches_2_42_and_is_zero_on_flat_lines() {
        let s = series(60_000, &[1.1, 2.3, 3.7, 4.2, 5.9, 7.3]);
        // 2.42: 0.020142857142857143 (uncompensated sums give ...136)
        assert_eq!(
            apply(RangeFunc::Deriv, &s, win(0, 600_000)),
            Some(0.020142857142857143)
        );
        // the sums' rounding would give -1.4e-19 here; 2.42 answers 0
        let s = series(60_000, &[0.1; 7]);
        assert_eq!(apply(RangeFunc::Deriv, &s, win(0, 600_000)), Some(0.0));
        let s = series(60_000, &[1.0]);
        assert_eq!(apply(RangeFunc::Deriv, &s, win(0, 600_000)), None);
    }

    #[test]
    fn rate_extrapolates_to_both_edges_when_close() {
        // samples every 15s at 10..280s holding 0,1,..,18; window [0, 300]s.
        // result 18, sampled 270s, avg 15s, threshold 16.5s.
        // toStart 10s: zero point at 270*(0/18)=0 < 10, so toStart = 0 (the counter started at 0).
        // toEnd 20s >= 16.5: extrapolate avg/2 = 7.5. interval = 270 + 0 + 7.5 = 277.5.
        // increase = 18 * 277.5/270 = 18.5; rate = 18.5/300.
        let s: Vec<Sample> = (0..19)
            .map(|i| Sample {
                t: 10_000 + i * 15_000,
                v: i as f64,
            })
            .collect();
        let w = win(0, 300_000);
        assert_eq!(
            apply(RangeFunc::Increase, &s, w),
            Some(18.0 * (277.5 / 270.0))
        );
        assert_eq!(
            apply(RangeFunc::Rate, &s, w),
            Some(18.0 * (277.5 / 270.0 / 300.0))
        );
        // delta does not clamp at zero: toStart 10 < 16.5 is added whole: 18*(270+10+7.5)/270
        assert_eq!(apply(RangeFunc::Delta, &s, w), Some(18.0 * (287.5 / 270.0)));
        // starting at 100 instead, the zero point is 270*100/18 = 1500s away: toStart stays 10.
        let s: Vec<Sample> = s
            .iter()
            .map(|x| Sample {
                t: x.t,
                v: x.v + 100.0,
            })
            .collect();
        assert_eq!(
            apply(RangeFunc::Increase, &s, w),
            Some(18.0 * (287.5 / 270.0))
        );
    }

    #[test]
    fn rate_clamps_extrapolation_at_the_counters_zero_point() {
        // samples at 10s,25s,40s with 1,3,5; window [0,45]s. result 4, sampled 30, avg 15.
        // toStart 10 but the zero point is 30*(1/4) = 7.5s before the first sample: toStart 7.5.
        // toEnd 5. interval = 30 + 7.5 + 5 = 42.5; increase = 4*42.5/30.
        let s = [
            Sample { t: 10_000, v: 1.0 },
            Sample { t: 25_000, v: 3.0 },
            Sample { t: 40_000, v: 5.0 },
        ];
        let w = win(0, 45_000);
        assert_eq!(apply(RangeFunc::Increase, &s, w), Some(4.0 * (42.5 / 30.0)));
        // without the clamp it would be 4*45/30 = 6
        assert_ne!(apply(RangeFunc::Increase, &s, w), Some(6.0));
    }

    #[test]
    fn counter_reset_inside_the_range() {
        // 10, 20, 5, 15 at 0,60,120,180s, window [0,180]s: the drop 20 -> 5 adds 20.
        // result = (15-10) + 20 = 25; no extrapolation (both edges on samples): increase 25.
        let s = series(60_000, &[10.0, 20.0, 5.0, 15.0]);
        let w = win(0, 180_000);
        assert_eq!(apply(RangeFunc::Increase, &s, w), Some(25.0));
        // Go scales by the factor (180/180)/180, not by dividing the result
        assert_eq!(apply(RangeFunc::Rate, &s, w), Some(25.0 * (1.0 / 180.0)));
        // delta ignores resets: 15 - 10
        assert_eq!(apply(RangeFunc::Delta, &s, w), Some(5.0));
        // irate after a reset takes the last value alone: 15 (no reset between 5 and 15) -> 10/60
        assert_eq!(apply(RangeFunc::Irate, &s, w), Some(10.0 / 60.0));
        let s = series(60_000, &[10.0, 20.0, 5.0]);
        assert_eq!(apply(RangeFunc::Irate, &s, w), Some(5.0 / 60.0));
        assert_eq!(apply(RangeFunc::Idelta, &s, w), Some(-15.0));
    }

    #[test]
    fn one_sample_gives_no_rate() {
        let s = series(60_000, &[3.0]);
        let w = win(0, 300_000);
        for f in [
            RangeFunc::Rate,
            RangeFunc::Increase,
            RangeFunc::Delta,
            RangeFunc::Irate,
        ] {
            assert_eq!(apply(f, &s, w), None, "{f:?}");
        }
        assert_eq!(apply(RangeFunc::CountOverTime, &s, w), Some(1.0));
        assert_eq!(apply(RangeFunc::LastOverTime, &s, w), Some(3.0));
    }

    #[test]
    fn min_max_over_time_skip_a_leading_nan() {
        let s = series(60_000, &[f64::NAN, 4.0, -2.0, 9.0]);
        let w = win(0, 600_000);
        assert_eq!(apply(RangeFunc::MinOverTime, &s, w), Some(-2.0));
        assert_eq!(apply(RangeFunc::MaxOverTime, &s, w), Some(9.0));
        // a later NaN does not win either (2.42: max_over_time of "4 NaN" is 4)
        let s = series(60_000, &[4.0, f64::NAN]);
        assert_eq!(apply(RangeFunc::MaxOverTime, &s, w), Some(4.0));
    }

    #[test]
    fn go_min_max_semantics() {
        assert!(go_min(f64::NAN, 1.0).is_nan());
        assert_eq!(go_min(f64::NAN, f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert!(go_min(0.0, -0.0).is_sign_negative());
        assert!(go_max(-0.0, 0.0).is_sign_positive());
        assert_eq!(go_max(2.0, 3.0), 3.0);
    }

    #[test]
    fn duration_seconds_like_go() {
        assert_eq!(duration_seconds(300_000), 300.0);
        assert_eq!(duration_seconds(1_500), 1.5);
    }
}
