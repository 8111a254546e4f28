//! Two pieces of Go's standard library that Prometheus's answers inherit, rebuilt to the bit:
//! `strconv.ParseFloat` (how `histogram_quantile` reads a bucket's `le` label) and the calendar
//! fields of `time.Unix(int64(v), 0).UTC()` (the date functions).
//!
//! Both matter only at edges a well-behaved exporter never reaches (`le="0x1p-3"`, `le="1_000"`,
//! `hour(vector(NaN))`), but a feature must give Prometheus's answer there too, not Rust's:
//! Rust's `str::parse::<f64>` reads neither hexadecimal floats nor digit separators and returns
//! infinity where Go reports an overflow, and Rust's `as i64` saturates where Go's conversion on
//! amd64 gives `i64::MIN`. `tests/promql_edges.rs` checks both against the real binary.

/// Go's `strconv.ParseFloat(s, 64)`: `None` where Go returns an error (bad syntax, or a finite
/// number too large for an f64, which Go reports as out of range). Accepts what Go accepts:
/// decimal and hexadecimal (`0x1.8p3`, the `p` exponent required) numbers, `_` between digits,
/// `inf`/`infinity` with a sign and `nan` without, in any case.
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    if let Some(v) = special(s) {
        return Some(v);
    }
    if s.contains('_') && !underscores_ok(s) {
        return None;
    }
    let digits: String = s.chars().filter(|&c| c != '_').collect();
    let (negative, unsigned) = match digits.as_bytes().first() {
        Some(b'-') => (true, &digits[1..]),
        Some(b'+') => (false, &digits[1..]),
        _ => (false, &digits[..]),
    };
    let magnitude = if unsigned.len() > 2 && unsigned[..2].eq_ignore_ascii_case("0x") {
        parse_hex(&unsigned[2..])?
    } else {
        // Past the specials, Go's decimal grammar is Rust's: digits with at most one point and
        // at least one digit, then an optional `e` with an optional sign and digits.
        if unsigned.starts_with(['+', '-'])
            || !unsigned
                .bytes()
                .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b))
        {
            return None;
        }
        unsigned.parse::<f64>().ok()?
    };
    if magnitude.is_infinite() {
        return None; // Go: ErrRange
    }
    Some(if negative { -magnitude } else { magnitude })
}

/// Go's `special`: an optionally signed `inf` or `infinity`, or an unsigned `nan`, any case,
/// and nothing after it.
fn special(s: &str) -> Option<f64> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => {
            if s.eq_ignore_ascii_case("nan") {
                return Some(f64::NAN);
            }
            (1.0, s)
        }
    };
    (rest.eq_ignore_ascii_case("inf") || rest.eq_ignore_ascii_case("infinity"))
        .then_some(sign * f64::INFINITY)
}

/// Go's `underscoreOK`: each `_` stands between two digits, or between a base prefix and a
/// digit (hexadecimal letters are digits after `0x`).
fn underscores_ok(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
    #[derive(PartialEq)]
    enum Saw {
        Start,
        Digit,
        Underscore,
        Other,
    }
    let mut saw = Saw::Start;
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = Saw::Digit; // the prefix counts as a digit
        hex = s[1].eq_ignore_ascii_case(&b'x');
    }
    for &c in &s[i..] {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = Saw::Digit;
        } else if c == b'_' {
            if saw != Saw::Digit {
                return false;
            }
            saw = Saw::Underscore;
        } else if saw == Saw::Underscore {
            return false;
        } else {
            saw = Saw::Other;
        }
    }
    saw != Saw::Underscore
}

/// The magnitude of a hexadecimal float after its `0x`: hex digits with at most one point (at
/// least one digit), then `p`, an optional sign and decimal digits; rounded to nearest, ties to
/// even, as Go's `atofHex` rounds (subnormals included). Infinity where it overflows.
fn parse_hex(s: &str) -> Option<f64> {
    let (mantissa, exponent) = s.split_once(['p', 'P'])?;
    let exponent = {
        let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Saturate: any exponent this large already overflows or underflows.
        let e = digits
            .bytes()
            .fold(0i64, |e, b| (e * 10 + i64::from(b - b'0')).min(100_000));
        if exponent.starts_with('-') { -e } else { e }
    };
    // Up to 60 significant bits; further digits only decide the rounding (`sticky`).
    let (mut bits, mut scale, mut sticky) = (0u64, exponent, false);
    let (mut any_digit, mut seen_point) = (false, false);
    for c in mantissa.bytes() {
        if c == b'.' {
            if seen_point {
                return None;
            }
            seen_point = true;
            continue;
        }
        let d = u64::from(char::from(c).to_digit(16)?);
        any_digit = true;
        if bits >> 56 == 0 {
            bits = bits << 4 | d;
            if seen_point {
                scale -= 4;
            }
        } else {
            sticky |= d != 0;
            if !seen_point {
                scale += 4;
            }
        }
    }
    if !any_digit {
        return None;
    }
    if bits == 0 {
        return Some(0.0);
    }
    // value = (bits + sticky fraction) · 2^scale; round to 53 bits, or fewer where the result
    // is subnormal (its lowest bit is 2^-1074).
    let width = 64 - i64::from(bits.leading_zeros());
    let top = width - 1 + scale; // the binary exponent of the leading bit
    if top > 1023 {
        return Some(f64::INFINITY);
    }
    let lowest = (top - 52).max(-1074); // the exponent of the result's last kept bit
    let drop = lowest - scale;
    let (kept, exponent) = if drop <= 0 {
        (bits, scale)
    } else if drop >= 64 {
        // Everything is below half of the smallest subnormal... or exactly round to it.
        let half = drop == 64 && bits >> 63 == 1;
        let above_half = half && (bits << 1 != 0 || sticky);
        (u64::from(above_half), lowest)
    } else {
        let kept = bits >> drop;
        let rest = bits & ((1u64 << drop) - 1);
        let half = 1u64 << (drop - 1);
        let round_up = rest > half || (rest == half && (sticky || kept & 1 == 1));
        (kept + u64::from(round_up), lowest)
    };
    // `kept` has at most 54 bits (a carry) and converts exactly; the power of two scales it
    // exactly too, short of overflow, which is then infinity as it should be.
    Some(kept as f64 * pow2(exponent))
}

/// 2^e as an f64 for -1074 <= e, in at most two exact steps.
fn pow2(e: i64) -> f64 {
    let one = |e: i64| f64::from_bits(((e + 1023) as u64) << 52);
    if e > 1023 {
        f64::INFINITY
    } else if e >= -1022 {
        one(e)
    } else {
        one(e + 1022) * one(-1022)
    }
}

/// Go's `int64(v)` on amd64 (`CVTTSD2SQ`): truncation toward zero, and `i64::MIN` for NaN and
/// for anything outside the range of an i64.
pub(crate) fn go_int64(v: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if v.is_nan() || !(-LIMIT..LIMIT).contains(&v) {
        i64::MIN
    } else {
        v as i64
    }
}

/// The calendar fields of `time.Unix(secs, 0).UTC()`, computed as Go 1.19/1.20's `time`
/// package does: from seconds since its absolute zero year, in wrapping unsigned arithmetic, so
/// that times beyond Go's range wrap as they do in Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GoDate {
    pub(crate) year: i64,
    /// 1 to 12.
    pub(crate) month: i64,
    /// 1 to 31.
    pub(crate) day: i64,
    /// 1 to 366.
    pub(crate) year_day: i64,
    /// Sunday is 0.
    pub(crate) weekday: i64,
    pub(crate) hour: i64,
    pub(crate) minute: i64,
}

const SECONDS_PER_DAY: u64 = 86_400;
const DAYS_PER_400_YEARS: u64 = 365 * 400 + 97;
const DAYS_PER_100_YEARS: u64 = 365 * 100 + 24;
const DAYS_PER_4_YEARS: u64 = 365 * 4 + 1;
const ABSOLUTE_ZERO_YEAR: i64 = -292_277_022_399;
/// Seconds from Go's absolute zero year to the Unix epoch (`unixToInternal + internalToAbsolute`).
/// Go writes `(absoluteZeroYear - internalYear) * 365.2425 * secondsPerDay` as an exact
/// constant expression; 365.2425 days are 31,556,952 s.
const UNIX_TO_ABSOLUTE: i64 = {
    let absolute_to_internal = (ABSOLUTE_ZERO_YEAR as i128 - 1) * 31_556_952;
    let unix_to_internal = (1969 * 365 + 1969 / 4 - 1969 / 100 + 1969 / 400) * 86_400;
    (unix_to_internal - absolute_to_internal) as i64
};
/// Days before each month's first in a non-leap year (Go's `daysBefore`).
const DAYS_BEFORE: [u64; 13] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];

pub(crate) fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

impl GoDate {
    pub(crate) fn from_unix(secs: i64) -> GoDate {
        let abs = secs.wrapping_add(UNIX_TO_ABSOLUTE) as u64;
        // Go's `absDate`.
        let mut d = abs / SECONDS_PER_DAY;
        let mut n = d / DAYS_PER_400_YEARS;
        let mut y = 400 * n;
        d -= DAYS_PER_400_YEARS * n;
        n = d / DAYS_PER_100_YEARS;
        n -= n >> 2;
        y += 100 * n;
        d -= DAYS_PER_100_YEARS * n;
        n = d / DAYS_PER_4_YEARS;
        y += 4 * n;
        d -= DAYS_PER_4_YEARS * n;
        n = d / 365;
        n -= n >> 2;
        y += n;
        d -= 365 * n;
        let year = (y as i64).wrapping_add(ABSOLUTE_ZERO_YEAR);
        let year_day = d;
        let mut day = year_day;
        let (month, day) = if is_leap(year) && day == 31 + 29 - 1 {
            (2, 29)
        } else {
            if is_leap(year) && day > 31 + 29 - 1 {
                day -= 1; // after the leap day: pretend it was not there
            }
            let mut month = day / 31;
            let end = DAYS_BEFORE[month as usize + 1];
            let begin = if day >= end {
                month += 1;
                end
            } else {
                DAYS_BEFORE[month as usize]
            };
            (month as i64 + 1, (day - begin) as i64 + 1)
        };
        // Go's `absWeekday`: the absolute zero year began on a Monday.
        let weekday =
            ((abs.wrapping_add(SECONDS_PER_DAY) % (7 * SECONDS_PER_DAY)) / SECONDS_PER_DAY) as i64;
        GoDate {
            year,
            month,
            day,
            year_day: year_day as i64 + 1,
            weekday,
            hour: (abs % SECONDS_PER_DAY / 3600) as i64,
            minute: (abs % 3600 / 60) as i64,
        }
    }

    /// Prometheus's `days_in_month`: `32 - time.Date(year, month, 32, …).Day()`, which is the
    /// month's length.
    pub(crate) fn days_in_month(&self) -> i64 {
        match self.month {
            2 if is_leap(self.year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_float_reads_what_go_reads() {
        let ok = [
            ("1", 1.0),
            ("-2.5", -2.5),
            ("+.5e1", 5.0),
            ("1.", 1.0),
            ("1_000.5", 1000.5),
            ("4e-1_0", 4e-10),
            ("0x1p1", 2.0),
            ("0X1P-1", 0.5),
            ("0x1.8p1", 3.0),
            ("0x.8p1", 1.0),
            ("0x_1p0", 1.0),
            ("-0x10p-4", -1.0),
            ("+Inf", f64::INFINITY),
            ("-infinity", f64::NEG_INFINITY),
            ("1e-400", 0.0),
            ("0x1p-1074", f64::from_bits(1)),
            ("0x1p-1075", 0.0),                       // a tie, to even
            ("0x1.0000001p-1075", f64::from_bits(1)), // just above the tie
        ];
        for (s, want) in ok {
            let v = parse_float(s).unwrap_or_else(|| panic!("{s}: refused, Go reads {want}"));
            assert_eq!(v.to_bits(), want.to_bits(), "{s}");
        }
        assert!(parse_float("NaN").is_some_and(f64::is_nan));
        for bad in [
            "",
            " 1",
            "1 ",
            "0x1",
            "0x10",
            "1__0",
            "_1",
            "1_",
            "+nan",
            "1e",
            ".",
            "e1",
            "0x",
            "0xp1",
            "1e400",
            "0x1p1024",
            "--1",
            "1.2.3",
            "inf1",
            // halfway between the largest finite and 2^1024 rounds to even, past the largest
            "0x1.fffffffffffff8p1023",
        ] {
            assert_eq!(parse_float(bad), None, "{bad:?}");
        }
        // the largest finite and the smallest normal, round trip through hex
        assert_eq!(parse_float("0x1.fffffffffffffp1023"), Some(f64::MAX));
        assert_eq!(parse_float("0x1p-1022"), Some(f64::MIN_POSITIVE));
        // ties to even below the 53rd bit, and a sticky digit past the 60 kept bits
        assert_eq!(parse_float("0x1.00000000000008p0"), Some(1.0));
        assert_eq!(
            parse_float("0x1.00000000000018p0"),
            Some(1.0 + 2.0 * f64::EPSILON)
        );
        assert_eq!(
            parse_float("0x1.000000000000080000001p0"),
            Some(1.0 + f64::EPSILON)
        );
    }

    #[test]
    fn go_dates_match_the_proleptic_calendar_in_range() {
        // 2024-02-29T13:45:00Z, a Thursday; 1969-12-31T23:59:59Z, a Wednesday
        let d = GoDate::from_unix(1_709_214_300);
        assert_eq!(
            (
                d.year, d.month, d.day, d.year_day, d.weekday, d.hour, d.minute
            ),
            (2024, 2, 29, 60, 4, 13, 45)
        );
        assert_eq!(d.days_in_month(), 29);
        let d = GoDate::from_unix(-1);
        assert_eq!(
            (
                d.year, d.month, d.day, d.year_day, d.weekday, d.hour, d.minute
            ),
            (1969, 12, 31, 365, 3, 23, 59)
        );
        for days in (-800_000i64..800_000).step_by(997) {
            let t =
                time::OffsetDateTime::from_unix_timestamp(days * 86_400 + 3_723).expect("in range");
            let g = GoDate::from_unix(days * 86_400 + 3_723);
            assert_eq!(
                (g.year, g.month, g.day, g.year_day, g.hour, g.minute),
                (
                    i64::from(t.year()),
                    i64::from(u8::from(t.month())),
                    i64::from(t.day()),
                    i64::from(t.ordinal()),
                    1,
                    2
                )
            );
            assert_eq!(g.weekday, i64::from(t.weekday().number_days_from_sunday()));
            assert_eq!(g.days_in_month(), i64::from(t.month().length(t.year())));
        }
        assert_eq!(go_int64(f64::NAN), i64::MIN);
        assert_eq!(go_int64(f64::INFINITY), i64::MIN);
        assert_eq!(go_int64(-1.9), -1);
        assert_eq!(go_int64(9.3e18), i64::MIN);
    }
}
