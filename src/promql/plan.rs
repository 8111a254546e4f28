//! Lowering a feature expression to canopy's plan tree.
//!
//! Owns the decision of what canopy supports: `promql-parser` accepts all of PromQL (and some
//! of 3.x), and this module turns exactly Prometheus 2.42's float PromQL that README.md lists
//! into [`Node`]s and refuses everything else with an error naming the construct, so a bad
//! feature fails at config load and never at an evaluation step. It also answers the two
//! questions the agent asks before any sample arrives: which selectors a plan reads (the ingest
//! prefilter) and how far back it looks (retention). It must not read the store or evaluate
//! anything.

use std::sync::Once;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    self, AggregateExpr, AtModifier, BinaryExpr, Call, Expr, Function, LabelModifier, Offset,
    SubqueryExpr, VectorMatchCardinality, VectorSelector,
};
use regex::Regex;

use crate::series::labels::METRIC_NAME;
use crate::series::{Labels, Selector};

/// How far back an instant selector looks for its newest sample (Prometheus's default
/// `--query.lookback-delta`).
pub(crate) const LOOKBACK_DELTA_MS: i64 = 5 * 60 * 1000;

/// A subquery without a resolution (`[1h:]`) steps at Prometheus's default global
/// `evaluation_interval`, one minute.
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// A subquery, with the subqueries around it, may evaluate its expression at most this many times
/// per step (Prometheus's 11,000 points per series of a `query_range`): `x[1y:1ms]` would
/// otherwise stall every step.
const MAX_SUBQUERY_STEPS: i64 = 11_000;

/// Ranges and offsets longer than this are refused, so that `T − offset − range` can never
/// overflow an i64 of milliseconds, whatever the configured expression says.
const MAX_DURATION_MS: i64 = 10_000 * 366 * 24 * 3_600_000;

/// Why an expression cannot become a plan; both variants name the expression.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PlanError {
    #[error("cannot parse {expr:?}: {reason}")]
    Parse { expr: String, reason: String },
    #[error("{expr:?}: unsupported {construct}")]
    Unsupported { expr: String, construct: String },
}

/// What a node evaluates to; fixed at plan time, as PromQL's static typing fixes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Scalar,
    Vector,
}

/// The functions of a range vector; each yields at most one value per series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeFunc {
    Rate,
    Irate,
    Increase,
    Delta,
    Idelta,
    Deriv,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    SumOverTime,
    CountOverTime,
    StddevOverTime,
    StdvarOverTime,
    LastOverTime,
    PresentOverTime,
    Changes,
    Resets,
    /// Parameter: φ, before the range.
    QuantileOverTime,
    /// Parameter: seconds ahead, after the range.
    PredictLinear,
    /// Parameters: smoothing and trend factors, after the range.
    HoltWinters,
}

impl RangeFunc {
    fn from_name(name: &str) -> Option<RangeFunc> {
        Some(match name {
            "rate" => RangeFunc::Rate,
            "irate" => RangeFunc::Irate,
            "increase" => RangeFunc::Increase,
            "delta" => RangeFunc::Delta,
            "idelta" => RangeFunc::Idelta,
            "deriv" => RangeFunc::Deriv,
            "avg_over_time" => RangeFunc::AvgOverTime,
            "min_over_time" => RangeFunc::MinOverTime,
            "max_over_time" => RangeFunc::MaxOverTime,
            "sum_over_time" => RangeFunc::SumOverTime,
            "count_over_time" => RangeFunc::CountOverTime,
            "stddev_over_time" => RangeFunc::StddevOverTime,
            "stdvar_over_time" => RangeFunc::StdvarOverTime,
            "last_over_time" => RangeFunc::LastOverTime,
            "present_over_time" => RangeFunc::PresentOverTime,
            "changes" => RangeFunc::Changes,
            "resets" => RangeFunc::Resets,
            "quantile_over_time" => RangeFunc::QuantileOverTime,
            "predict_linear" => RangeFunc::PredictLinear,
            "holt_winters" => RangeFunc::HoltWinters,
            _ => return None,
        })
    }
}

/// Element-wise functions of an instant vector (all drop `__name__`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MathFunc {
    Abs,
    Ceil,
    Floor,
    Exp,
    Sqrt,
    Ln,
    Log2,
    Log10,
    Sgn,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Asinh,
    Acosh,
    Atanh,
    Deg,
    Rad,
}

impl MathFunc {
    fn from_name(name: &str) -> Option<MathFunc> {
        Some(match name {
            "abs" => MathFunc::Abs,
            "ceil" => MathFunc::Ceil,
            "floor" => MathFunc::Floor,
            "exp" => MathFunc::Exp,
            "sqrt" => MathFunc::Sqrt,
            "ln" => MathFunc::Ln,
            "log2" => MathFunc::Log2,
            "log10" => MathFunc::Log10,
            "sgn" => MathFunc::Sgn,
            "sin" => MathFunc::Sin,
            "cos" => MathFunc::Cos,
            "tan" => MathFunc::Tan,
            "asin" => MathFunc::Asin,
            "acos" => MathFunc::Acos,
            "atan" => MathFunc::Atan,
            "sinh" => MathFunc::Sinh,
            "cosh" => MathFunc::Cosh,
            "tanh" => MathFunc::Tanh,
            "asinh" => MathFunc::Asinh,
            "acosh" => MathFunc::Acosh,
            "atanh" => MathFunc::Atanh,
            "deg" => MathFunc::Deg,
            "rad" => MathFunc::Rad,
            _ => return None,
        })
    }

    /// Go's `math` functions are correctly rounded or within an ulp, as libm's are; the parity
    /// test compares to 1e-9 relative.
    pub(crate) fn apply(self, v: f64) -> f64 {
        match self {
            MathFunc::Abs => v.abs(),
            MathFunc::Ceil => v.ceil(),
            MathFunc::Floor => v.floor(),
            MathFunc::Exp => v.exp(),
            MathFunc::Sqrt => v.sqrt(),
            MathFunc::Ln => v.ln(),
            MathFunc::Log2 => v.log2(),
            MathFunc::Log10 => v.log10(),
            MathFunc::Sgn => {
                if v < 0.0 {
                    -1.0
                } else if v > 0.0 {
                    1.0
                } else {
                    v
                }
            }
            MathFunc::Sin => v.sin(),
            MathFunc::Cos => v.cos(),
            MathFunc::Tan => v.tan(),
            MathFunc::Asin => v.asin(),
            MathFunc::Acos => v.acos(),
            MathFunc::Atan => v.atan(),
            MathFunc::Sinh => v.sinh(),
            MathFunc::Cosh => v.cosh(),
            MathFunc::Tanh => v.tanh(),
            MathFunc::Asinh => v.asinh(),
            MathFunc::Acosh => v.acosh(),
            MathFunc::Atanh => v.atanh(),
            // `funcDeg`/`funcRad` multiply first, then divide, as written here.
            MathFunc::Deg => v * 180.0 / std::f64::consts::PI,
            MathFunc::Rad => v * std::f64::consts::PI / 180.0,
        }
    }
}

/// The date functions: a vector of Unix seconds (default `vector(time())`) to a calendar field
/// in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateFunc {
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    DaysInMonth,
    Hour,
    Minute,
    Month,
    Year,
}

impl DateFunc {
    fn from_name(name: &str) -> Option<DateFunc> {
        Some(match name {
            "day_of_month" => DateFunc::DayOfMonth,
            "day_of_week" => DateFunc::DayOfWeek,
            "day_of_year" => DateFunc::DayOfYear,
            "days_in_month" => DateFunc::DaysInMonth,
            "hour" => DateFunc::Hour,
            "minute" => DateFunc::Minute,
            "month" => DateFunc::Month,
            "year" => DateFunc::Year,
            _ => return None,
        })
    }
}

/// The aggregation operators of Prometheus 2.42.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Stddev,
    Stdvar,
    Group,
    /// The label that carries each value.
    CountValues(String),
    Topk,
    Bottomk,
    Quantile,
}

/// The binary operators: arithmetic, comparison and set operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    fn from_name(name: &str) -> Option<BinOp> {
        Some(match name {
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "%" => BinOp::Mod,
            "^" => BinOp::Pow,
            "atan2" => BinOp::Atan2,
            "==" => BinOp::Eq,
            "!=" => BinOp::Ne,
            ">" => BinOp::Gt,
            "<" => BinOp::Lt,
            ">=" => BinOp::Ge,
            "<=" => BinOp::Le,
            "and" => BinOp::And,
            "or" => BinOp::Or,
            "unless" => BinOp::Unless,
            _ => return None,
        })
    }

    pub(crate) fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }

    pub(crate) fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    /// `shouldDropMetricName`: the arithmetic operators but `atan2` drop `__name__`.
    pub(crate) fn drops_name(self) -> bool {
        matches!(
            self,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Pow
        )
    }

    /// `vectorElemBinop`: the value, and whether a comparison keeps the element. Go's `%` is
    /// `math.Mod` (the sign of the dividend), as Rust's is.
    pub(crate) fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            BinOp::Add => (l + r, true),
            BinOp::Sub => (l - r, true),
            BinOp::Mul => (l * r, true),
            BinOp::Div => (l / r, true),
            BinOp::Mod => (l % r, true),
            BinOp::Pow => (l.powf(r), true),
            BinOp::Atan2 => (l.atan2(r), true),
            BinOp::Eq => (l, l == r),
            BinOp::Ne => (l, l != r),
            BinOp::Gt => (l, l > r),
            BinOp::Lt => (l, l < r),
            BinOp::Ge => (l, l >= r),
            BinOp::Le => (l, l <= r),
            BinOp::And | BinOp::Or | BinOp::Unless => (l, true),
        }
    }

    /// `scalarBinop`: comparisons between scalars give 1 or 0 (the parser demands `bool`).
    pub(crate) fn scalar(self, l: f64, r: f64) -> f64 {
        let (v, keep) = self.apply(l, r);
        if self.is_comparison() {
            if keep { 1.0 } else { 0.0 }
        } else {
            v
        }
    }
}

/// Which labels identify a series when two vectors are matched or a vector is grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LabelSet {
    /// `on(...)` / `by(...)`: only these.
    Only(Vec<String>),
    /// `ignoring(...)` / `without(...)`: all but these (and never `__name__`).
    AllBut(Vec<String>),
}

/// How the two sides of a vector–vector operation match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    OneToOne,
    /// `group_left`: many lhs series to one rhs series.
    ManyToOne,
    /// `group_right`: one lhs series to many rhs series.
    OneToMany,
    /// The set operators.
    ManyToMany,
}

/// The `on`/`ignoring`, `group_left`/`group_right` and `bool` modifiers of a binary operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Matching {
    pub(crate) labels: LabelSet,
    pub(crate) card: Card,
    /// The labels `group_left(...)`/`group_right(...)` copy from the "one" side.
    pub(crate) include: Vec<String>,
    pub(crate) return_bool: bool,
}

/// One selector as the plan reads it: what it matches and which window relative to T.
#[derive(Debug, Clone)]
pub(crate) struct SelectorUse {
    pub(crate) selector: Selector,
    /// The selector's text and range without offset: identical selectors share evaluator caches.
    pub(crate) key: String,
    /// `offset` in ms (never negative: Prometheus 2.42 refuses negative offsets by default).
    pub(crate) offset_ms: i64,
    /// The range in ms, `None` for an instant selector.
    pub(crate) range_ms: Option<i64>,
    /// `@ <time>` in ms: the selector reads at that fixed time instead of T.
    pub(crate) at_ms: Option<i64>,
    /// How far before T the enclosing subqueries start evaluating (their ranges and offsets).
    pub(crate) outer_ms: i64,
}

impl SelectorUse {
    /// How far before T this selector reads.
    pub(crate) fn lookback_ms(&self) -> i64 {
        self.range_ms.unwrap_or(LOOKBACK_DELTA_MS) + self.offset_ms + self.outer_ms
    }
}

/// What a range function reads: a range selector or a subquery.
#[derive(Debug, Clone)]
pub(crate) enum RangeSource {
    /// Index into [`Plan::selector_uses`].
    Selector(usize),
    Subquery(Box<Subquery>),
}

/// `expr[range:step] offset o @ t`: `expr` evaluated at every multiple of `step_ms` in
/// [T−o−range, T−o], as Prometheus aligns subquery steps to the epoch.
#[derive(Debug, Clone)]
pub(crate) struct Subquery {
    pub(crate) expr: Node,
    pub(crate) range_ms: i64,
    pub(crate) step_ms: i64,
    pub(crate) offset_ms: i64,
    pub(crate) at_ms: Option<i64>,
}

/// canopy's plan tree: one node per supported construct, parentheses gone.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Number(f64),
    /// Index into [`Plan::selector_uses`].
    Instant(usize),
    Range {
        func: RangeFunc,
        source: RangeSource,
        /// The scalar arguments besides the range, in the order the function takes them.
        params: Vec<Node>,
    },
    /// `absent_over_time(range)`: 1 with `labels` when no series has a sample in the range.
    AbsentOverTime {
        source: RangeSource,
        labels: Labels,
    },
    /// `absent(v)`: 1 with `labels` when `v` is empty.
    Absent {
        arg: Box<Node>,
        labels: Labels,
    },
    Aggregate {
        op: AggOp,
        grouping: LabelSet,
        /// k of topk/bottomk, φ of quantile.
        param: Option<Box<Node>>,
        arg: Box<Node>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
        /// For vector–vector only; scalar operands use only `return_bool`.
        matching: Matching,
    },
    Neg(Box<Node>),
    /// `vector(s)`
    Vector(Box<Node>),
    /// `scalar(v)`
    Scalar(Box<Node>),
    Math(MathFunc, Box<Node>),
    /// `round(v, to_nearest)`
    Round(Box<Node>, Option<Box<Node>>),
    /// `clamp`, `clamp_min`, `clamp_max`
    Clamp {
        arg: Box<Node>,
        min: Option<Box<Node>>,
        max: Option<Box<Node>>,
    },
    /// `time()`
    Time,
    /// `timestamp(v)`: a selector's sample times, or T for any other argument.
    Timestamp(Box<Node>),
    /// A date function of its argument, or of `vector(time())` without one.
    Date(DateFunc, Option<Box<Node>>),
    /// `histogram_quantile(φ, buckets)` over classic `le` buckets.
    HistogramQuantile(Box<Node>, Box<Node>),
    LabelReplace {
        arg: Box<Node>,
        dst: String,
        replacement: String,
        src: String,
        regex: Regex,
    },
    LabelJoin {
        arg: Box<Node>,
        dst: String,
        sep: String,
        srcs: Vec<String>,
    },
    /// `sort`/`sort_desc`: only the order changes, and a feature's result is a set.
    Sort(Box<Node>),
}

impl Node {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Node::Number(_) | Node::Scalar(_) | Node::Time => Kind::Scalar,
            Node::Binary { lhs, rhs, .. } => {
                if lhs.kind() == Kind::Scalar && rhs.kind() == Kind::Scalar {
                    Kind::Scalar
                } else {
                    Kind::Vector
                }
            }
            Node::Neg(x) => x.kind(),
            _ => Kind::Vector,
        }
    }
}

/// Registers the 2.42 functions that `promql-parser` no longer knows by their 2.42 names.
fn register_2_42_functions() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // `holt_winters` was renamed `double_exponential_smoothing` in 3.0. An error means it is
        // known already, which is what registering wants.
        let _ = parser::register_extra_functions(vec![Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        )]);
    });
}

/// Parses `expr` as Prometheus 2.42 does: `promql-parser` with 2.42's function names. Every
/// parse of a feature expression goes through here.
pub fn parse_expr(expr: &str) -> Result<Expr, String> {
    register_2_42_functions();
    if let Some(number) = unitless_duration(expr) {
        return Err(format!(
            "missing unit character in duration \"{number}\" (a range, resolution or offset \
             needs a unit, e.g. 5m)"
        ));
    }
    parser::parse(expr)
}

/// A number written where a duration goes (`[300]`, `[5m:10]`, `offset 60`), if there is one.
/// Prometheus 2.42 refuses these; `promql-parser` reads them as seconds, and panics on one too
/// large for a `Duration` (`[1e40]`), so they are refused before it sees them.
fn unitless_duration(expr: &str) -> Option<&str> {
    let is_number = |token: &str| {
        let t = token.trim();
        let t = t.strip_prefix(['+', '-']).unwrap_or(t).trim_start();
        !t.is_empty()
            && (t.parse::<f64>().is_ok()
                || t.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x")))
    };
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'"' | b'\'' | b'`') => {
                // A string literal: skip to its closing quote (backslash escapes, except in
                // raw backquoted strings).
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += if bytes[i] == b'\\' && quote != b'`' {
                        2
                    } else {
                        1
                    };
                }
            }
            b'[' => {
                let end = expr[i..].find(']').map_or(expr.len(), |k| i + k);
                if let Some(part) = expr[i + 1..end].split(':').find(|p| is_number(p)) {
                    return Some(part.trim());
                }
                i = end;
            }
            b'o' | b'O'
                if expr[i..]
                    .get(..6)
                    .is_some_and(|w| w.eq_ignore_ascii_case("offset"))
                    && !expr[..i]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') =>
            {
                let rest = &expr[i + 6..];
                if rest.starts_with(char::is_whitespace) {
                    let token = rest
                        .split(|c: char| c.is_whitespace() || "()[]{},".contains(c))
                        .map(str::trim)
                        .find(|t| !t.is_empty() && *t != "+" && *t != "-");
                    if let Some(t) = token.filter(|t| is_number(t)) {
                        return Some(t);
                    }
                }
                i += 6;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `expr` in canonical form: parsed and printed back by `promql-parser`, so that two spellings
/// of one expression (spacing, line breaks, `sum(x) by (a)` and `sum by (a) (x)`) compare equal.
/// An expression that does not parse is only trimmed.
pub fn canonical(expr: &str) -> String {
    parse_expr(expr).map_or_else(|_| expr.trim().to_owned(), |ast| ast.to_string())
}

/// A feature expression lowered to the supported subset, ready for [`super::Evaluator`].
#[derive(Debug, Clone)]
pub struct Plan {
    expr: String,
    root: Node,
    selectors: Vec<SelectorUse>,
}

impl Plan {
    /// Parses `expr` and lowers it, refusing anything outside the supported subset.
    pub fn parse(expr: &str) -> Result<Plan, PlanError> {
        let ast = parse_expr(expr).map_err(|reason| PlanError::Parse {
            expr: expr.to_owned(),
            reason,
        })?;
        let mut lower = Lower {
            expr,
            selectors: Vec::new(),
            outer_ms: 0,
            outer_steps: 1,
        };
        let root = lower.node(&ast)?;
        Ok(Plan {
            expr: expr.to_owned(),
            root,
            selectors: lower.selectors,
        })
    }

    /// The expression as written.
    pub(crate) fn expr(&self) -> &str {
        &self.expr
    }

    pub(crate) fn root(&self) -> &Node {
        &self.root
    }

    /// Whether the plan yields a scalar or an instant vector.
    #[cfg(test)]
    pub(crate) fn kind(&self) -> Kind {
        self.root.kind()
    }

    /// Every selector the plan reads, in the order they appear in the expression.
    pub(crate) fn selector_uses(&self) -> &[SelectorUse] {
        &self.selectors
    }

    /// The selectors the ingest prefilter must let through for this plan: exactly those its
    /// selectors match, whatever function, operator or subquery reads them.
    pub(crate) fn selectors(&self) -> impl Iterator<Item = &Selector> + '_ {
        self.selectors.iter().map(|s| &s.selector)
    }

    /// The longest look-back of any selector (range or 5m lookback, plus offset, plus the
    /// ranges and offsets of the subqueries around it), in ms: how much history the store must
    /// retain behind T for this plan. Selectors pinned with `@` read a fixed time and count
    /// only their own window.
    pub(crate) fn lookback_ms(&self) -> i64 {
        self.selectors
            .iter()
            .map(|s| {
                if s.at_ms.is_some() {
                    0
                } else {
                    s.lookback_ms()
                }
            })
            .max()
            .unwrap_or(0)
    }
}

struct Lower<'e> {
    expr: &'e str,
    selectors: Vec<SelectorUse>,
    /// The look-back of the subqueries being lowered around the current node.
    outer_ms: i64,
    /// How many times per step the subqueries around the current node evaluate it.
    outer_steps: i64,
}

/// Labels a valid label name matches (`model.LabelName.IsValid`).
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// `createLabelsForAbsentFunction`: the labels of `absent` and `absent_over_time`, from the
/// selector's equality matchers; a label matched any other way, or twice, is left out.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match unwrap_parens(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    let mut set: Vec<(&str, &str)> = Vec::new();
    let mut removed: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.op == MatchOp::Equal && !set.iter().any(|(n, _)| *n == m.name) {
            set.push((&m.name, &m.value));
        } else {
            removed.push(&m.name);
        }
    }
    // Setting an empty value deletes the label, as Prometheus's label builder does.
    set.retain(|(n, v)| !v.is_empty() && !removed.contains(n));
    Labels::from_pairs(set)
}

fn string_arg(e: &Expr) -> Option<&str> {
    match unwrap_parens(e) {
        Expr::StringLiteral(s) => Some(&s.val),
        _ => None,
    }
}

impl Lower<'_> {
    fn unsupported(&self, construct: impl Into<String>) -> PlanError {
        PlanError::Unsupported {
            expr: self.expr.to_owned(),
            construct: construct.into(),
        }
    }

    fn node(&mut self, e: &Expr) -> Result<Node, PlanError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Node::Number(n.val)),
            Expr::Paren(p) => self.node(&p.expr),
            Expr::VectorSelector(vs) => Ok(Node::Instant(self.selector(vs, None)?)),
            Expr::MatrixSelector(_) => {
                Err(self.unsupported("range vector as a result (wrap it in a function)"))
            }
            Expr::Unary(u) => Ok(Node::Neg(Box::new(self.node(&u.expr)?))),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Binary(b) => self.binary(b),
            Expr::Call(c) => self.call(c),
            Expr::Subquery(_) => {
                Err(self.unsupported("subquery as a result (wrap it in a function)"))
            }
            Expr::StringLiteral(_) => Err(self.unsupported("string literal")),
            Expr::Extension(_) => Err(self.unsupported("extension expression")),
        }
    }

    fn at(&self, at: &Option<AtModifier>) -> Result<Option<i64>, PlanError> {
        match at {
            None => Ok(None),
            Some(AtModifier::Start) => {
                Err(self.unsupported("\"@ start()\" (a stream has no query start: write the time)"))
            }
            Some(AtModifier::End) => {
                Err(self.unsupported("\"@ end()\" (a stream has no query end: write the time)"))
            }
            Some(AtModifier::At(t)) => {
                let ms = match t.duration_since(std::time::UNIX_EPOCH) {
                    Ok(d) => i64::try_from(d.as_millis()).ok(),
                    Err(e) => i64::try_from(e.duration().as_millis()).ok().map(|m| -m),
                };
                ms.filter(|m| m.abs() <= MAX_DURATION_MS)
                    .map(Some)
                    .ok_or_else(|| self.unsupported("\"@\" time beyond 10,000 years"))
            }
        }
    }

    fn offset(&self, offset: &Option<Offset>) -> Result<i64, PlanError> {
        match offset {
            None => Ok(0),
            Some(Offset::Pos(d)) => self.millis(d),
            // Prometheus 2.42 refuses these unless started with --enable-feature=promql-negative-offset.
            Some(Offset::Neg(_)) => Err(self.unsupported("negative offset")),
        }
    }

    fn selector(&mut self, vs: &VectorSelector, range_ms: Option<i64>) -> Result<usize, PlanError> {
        let at_ms = self.at(&vs.at)?;
        if !vs.matchers.or_matchers.is_empty() {
            return Err(self.unsupported("\"or\" between label matchers"));
        }
        let offset_ms = self.offset(&vs.offset)?;
        let matchers: &[Matcher] = &vs.matchers.matchers;
        let mut bare = vs.clone();
        bare.offset = None;
        bare.at = None;
        // The window's length decides which series have samples in it; the offset only moves it.
        let key = match range_ms {
            Some(r) => format!("{bare}[{r}ms]"),
            None => bare.to_string(),
        };
        self.selectors.push(SelectorUse {
            selector: Selector::new(vs.name.as_deref(), matchers),
            key,
            offset_ms,
            range_ms,
            at_ms,
            outer_ms: self.outer_ms,
        });
        Ok(self.selectors.len() - 1)
    }

    fn millis(&self, d: &std::time::Duration) -> Result<i64, PlanError> {
        i64::try_from(d.as_millis())
            .ok()
            .filter(|&ms| ms <= MAX_DURATION_MS)
            .ok_or_else(|| self.unsupported("duration beyond 10,000 years"))
    }

    fn subquery(&mut self, s: &SubqueryExpr) -> Result<Subquery, PlanError> {
        let at_ms = self.at(&s.at)?;
        let offset_ms = self.offset(&s.offset)?;
        let range_ms = self.millis(&s.range)?;
        let step_ms = match &s.step {
            Some(d) => self.millis(d)?,
            None => DEFAULT_SUBQUERY_STEP_MS,
        };
        if step_ms <= 0 {
            return Err(self.unsupported("subquery resolution of zero"));
        }
        let steps = (range_ms / step_ms + 1).saturating_mul(self.outer_steps);
        if steps > MAX_SUBQUERY_STEPS {
            return Err(self.unsupported(format!(
                "subquery of {steps} steps per evaluation (at most {MAX_SUBQUERY_STEPS}: a coarser resolution or a shorter range)"
            )));
        }
        let (saved, saved_steps) = (self.outer_ms, self.outer_steps);
        self.outer_steps = steps;
        // Inside an `@` subquery, the selectors read relative to a fixed time.
        self.outer_ms = if at_ms.is_some() {
            0
        } else {
            saved.saturating_add(range_ms + offset_ms)
        };
        let expr = self.node(&s.expr);
        (self.outer_ms, self.outer_steps) = (saved, saved_steps);
        let expr = expr?;
        if expr.kind() != Kind::Vector {
            return Err(self.unsupported("subquery of a scalar"));
        }
        Ok(Subquery {
            expr,
            range_ms,
            step_ms,
            offset_ms,
            at_ms,
        })
    }

    fn range_source(&mut self, e: &Expr, func: &str) -> Result<RangeSource, PlanError> {
        match unwrap_parens(e) {
            Expr::MatrixSelector(ms) => {
                let range_ms = self.millis(&ms.range)?;
                Ok(RangeSource::Selector(
                    self.selector(&ms.vs, Some(range_ms))?,
                ))
            }
            Expr::Subquery(s) => Ok(RangeSource::Subquery(Box::new(self.subquery(s)?))),
            _ => Err(self.unsupported(format!(
                "argument to function {func:?} (a range selector or subquery is required)"
            ))),
        }
    }

    fn grouping(modifier: &Option<LabelModifier>) -> LabelSet {
        match modifier {
            None => LabelSet::Only(Vec::new()),
            Some(LabelModifier::Include(l)) => LabelSet::Only(l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => LabelSet::AllBut(l.labels.clone()),
        }
    }

    fn aggregate(&mut self, a: &AggregateExpr) -> Result<Node, PlanError> {
        let name = a.op.to_string();
        let mut op = match name.as_str() {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "count" => AggOp::Count,
            "stddev" => AggOp::Stddev,
            "stdvar" => AggOp::Stdvar,
            "group" => AggOp::Group,
            "topk" => AggOp::Topk,
            "bottomk" => AggOp::Bottomk,
            "quantile" => AggOp::Quantile,
            "count_values" => AggOp::CountValues(String::new()),
            _ => {
                return Err(
                    self.unsupported(format!("aggregation {name:?} (not in Prometheus 2.42)"))
                );
            }
        };
        let param = match (&mut op, &a.param) {
            (AggOp::CountValues(label), Some(p)) => {
                let Some(s) = string_arg(p) else {
                    return Err(self.unsupported("non-literal label of \"count_values\""));
                };
                if !valid_label_name(s) {
                    return Err(
                        self.unsupported(format!("label name {s:?} of \"count_values\" (invalid)"))
                    );
                }
                s.clone_into(label);
                None
            }
            (AggOp::Topk | AggOp::Bottomk | AggOp::Quantile, Some(p)) => {
                let n = self.node(p)?;
                if n.kind() != Kind::Scalar {
                    return Err(self.unsupported(format!("parameter of aggregation {name:?}")));
                }
                Some(Box::new(n))
            }
            (AggOp::Topk | AggOp::Bottomk | AggOp::Quantile | AggOp::CountValues(_), None) => {
                return Err(self.unsupported(format!("parameter of aggregation {name:?}")));
            }
            (_, None) => None,
            (_, Some(_)) => {
                return Err(self.unsupported(format!("parameter of aggregation {name:?}")));
            }
        };
        let arg = self.node(&a.expr)?;
        if arg.kind() != Kind::Vector {
            return Err(self.unsupported(format!("scalar argument to aggregation {name:?}")));
        }
        Ok(Node::Aggregate {
            op,
            grouping: Self::grouping(&a.modifier),
            param,
            arg: Box::new(arg),
        })
    }

    fn binary(&mut self, b: &BinaryExpr) -> Result<Node, PlanError> {
        let name = b.op.to_string();
        let Some(op) = BinOp::from_name(&name) else {
            return Err(self.unsupported(format!("binary operator {name:?}")));
        };
        let mut matching = Matching {
            labels: LabelSet::AllBut(Vec::new()),
            card: if op.is_set() {
                Card::ManyToMany
            } else {
                Card::OneToOne
            },
            include: Vec::new(),
            return_bool: false,
        };
        if let Some(m) = &b.modifier {
            matching.return_bool = m.return_bool;
            if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                return Err(self.unsupported("fill modifier (not in Prometheus 2.42)"));
            }
            match &m.card {
                VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany => {}
                VectorMatchCardinality::ManyToOne(l) => {
                    matching.card = Card::ManyToOne;
                    matching.include = l.labels.clone();
                }
                VectorMatchCardinality::OneToMany(l) => {
                    matching.card = Card::OneToMany;
                    matching.include = l.labels.clone();
                }
            }
            match &m.matching {
                None => {}
                Some(LabelModifier::Include(l)) => {
                    matching.labels = LabelSet::Only(l.labels.clone());
                }
                Some(LabelModifier::Exclude(l)) => {
                    matching.labels = LabelSet::AllBut(l.labels.clone());
                }
            }
        }
        if op.is_set() && matching.card != Card::ManyToMany {
            return Err(self.unsupported(format!("group modifier on set operator {name:?}")));
        }
        let lhs = Box::new(self.node(&b.lhs)?);
        let rhs = Box::new(self.node(&b.rhs)?);
        let scalars = lhs.kind() == Kind::Scalar || rhs.kind() == Kind::Scalar;
        if op.is_set() && scalars {
            return Err(self.unsupported(format!("set operator {name:?} on a scalar")));
        }
        if op.is_comparison()
            && lhs.kind() == Kind::Scalar
            && rhs.kind() == Kind::Scalar
            && !matching.return_bool
        {
            return Err(self.unsupported("comparison of scalars without \"bool\""));
        }
        Ok(Node::Binary {
            op,
            lhs,
            rhs,
            matching,
        })
    }

    fn typed(&mut self, e: &Expr, want: Kind, func: &str) -> Result<Box<Node>, PlanError> {
        let n = self.node(e)?;
        if n.kind() != want {
            return Err(self.unsupported(format!("argument type to function {func:?}")));
        }
        Ok(Box::new(n))
    }

    fn string(&self, e: &Expr, func: &str) -> Result<String, PlanError> {
        string_arg(e)
            .map(str::to_owned)
            .ok_or_else(|| self.unsupported(format!("non-literal string argument to {func:?}")))
    }

    fn call(&mut self, c: &Call) -> Result<Node, PlanError> {
        let name = c.func.name;
        let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
        let expr = self.expr;
        let arity = |lo: usize, hi: usize| -> Result<(), PlanError> {
            if (lo..=hi).contains(&args.len()) {
                Ok(())
            } else {
                Err(PlanError::Unsupported {
                    expr: expr.to_owned(),
                    construct: format!("{} arguments to function {name:?}", args.len()),
                })
            }
        };
        if let Some(func) = RangeFunc::from_name(name) {
            let (range_at, scalars): (usize, &[usize]) = match func {
                RangeFunc::QuantileOverTime => (1, &[0]),
                RangeFunc::PredictLinear => (0, &[1]),
                RangeFunc::HoltWinters => (0, &[1, 2]),
                _ => (0, &[]),
            };
            arity(1 + scalars.len(), 1 + scalars.len())?;
            let mut params = Vec::new();
            for &i in scalars {
                params.push(*self.typed(args[i], Kind::Scalar, name)?);
            }
            let source = self.range_source(args[range_at], name)?;
            let pinned = match &source {
                RangeSource::Selector(i) => self.selectors[*i].at_ms.is_some(),
                RangeSource::Subquery(sq) => sq.at_ms.is_some(),
            };
            if func == RangeFunc::PredictLinear && pinned {
                // Prometheus evaluates a pinned call once, at the query's start, and predicts
                // from there: a stream has no query start.
                return Err(self.unsupported(
                    "\"predict_linear\" over a range pinned with \"@\" (Prometheus predicts from the query's start)",
                ));
            }
            return Ok(Node::Range {
                func,
                source,
                params,
            });
        }
        if let Some(f) = MathFunc::from_name(name) {
            arity(1, 1)?;
            return Ok(Node::Math(f, self.typed(args[0], Kind::Vector, name)?));
        }
        if let Some(f) = DateFunc::from_name(name) {
            arity(0, 1)?;
            let arg = match args.first() {
                Some(a) => Some(self.typed(a, Kind::Vector, name)?),
                None => None,
            };
            return Ok(Node::Date(f, arg));
        }
        match name {
            "vector" => {
                arity(1, 1)?;
                Ok(Node::Vector(self.typed(args[0], Kind::Scalar, name)?))
            }
            "scalar" => {
                arity(1, 1)?;
                Ok(Node::Scalar(self.typed(args[0], Kind::Vector, name)?))
            }
            "time" => {
                arity(0, 0)?;
                Ok(Node::Time)
            }
            "pi" => {
                arity(0, 0)?;
                Ok(Node::Number(std::f64::consts::PI))
            }
            "timestamp" => {
                arity(1, 1)?;
                Ok(Node::Timestamp(self.typed(args[0], Kind::Vector, name)?))
            }
            "sort" | "sort_desc" => {
                arity(1, 1)?;
                Ok(Node::Sort(self.typed(args[0], Kind::Vector, name)?))
            }
            "round" => {
                arity(1, 2)?;
                let arg = self.typed(args[0], Kind::Vector, name)?;
                let to = match args.get(1) {
                    Some(a) => Some(self.typed(a, Kind::Scalar, name)?),
                    None => None,
                };
                Ok(Node::Round(arg, to))
            }
            "clamp" | "clamp_min" | "clamp_max" => {
                let n = if name == "clamp" { 3 } else { 2 };
                arity(n, n)?;
                let arg = self.typed(args[0], Kind::Vector, name)?;
                let first = self.typed(args[1], Kind::Scalar, name)?;
                Ok(match name {
                    "clamp" => Node::Clamp {
                        arg,
                        min: Some(first),
                        max: Some(self.typed(args[2], Kind::Scalar, name)?),
                    },
                    "clamp_min" => Node::Clamp {
                        arg,
                        min: Some(first),
                        max: None,
                    },
                    _ => Node::Clamp {
                        arg,
                        min: None,
                        max: Some(first),
                    },
                })
            }
            "absent" => {
                arity(1, 1)?;
                let labels = absent_labels(args[0]);
                Ok(Node::Absent {
                    arg: self.typed(args[0], Kind::Vector, name)?,
                    labels,
                })
            }
            "absent_over_time" => {
                arity(1, 1)?;
                let labels = absent_labels(args[0]);
                Ok(Node::AbsentOverTime {
                    source: self.range_source(args[0], name)?,
                    labels,
                })
            }
            "histogram_quantile" => {
                arity(2, 2)?;
                Ok(Node::HistogramQuantile(
                    self.typed(args[0], Kind::Scalar, name)?,
                    self.typed(args[1], Kind::Vector, name)?,
                ))
            }
            "label_replace" => {
                arity(5, 5)?;
                let arg = self.typed(args[0], Kind::Vector, name)?;
                let dst = self.string(args[1], name)?;
                let replacement = self.string(args[2], name)?;
                let src = self.string(args[3], name)?;
                let re = self.string(args[4], name)?;
                let regex = Regex::new(&format!("^(?:{re})$")).map_err(|_| {
                    self.unsupported(format!("regular expression {re:?} in label_replace()"))
                })?;
                if !valid_label_name(&dst) {
                    return Err(self.unsupported(format!(
                        "destination label name {dst:?} in label_replace()"
                    )));
                }
                Ok(Node::LabelReplace {
                    arg,
                    dst,
                    replacement,
                    src,
                    regex,
                })
            }
            "label_join" => {
                if args.len() < 3 {
                    arity(3, 3)?;
                }
                let arg = self.typed(args[0], Kind::Vector, name)?;
                let dst = self.string(args[1], name)?;
                let sep = self.string(args[2], name)?;
                let mut srcs = Vec::new();
                for a in &args[3..] {
                    srcs.push(self.string(a, name)?);
                }
                if let Some(bad) = std::iter::once(&dst)
                    .chain(&srcs)
                    .find(|l| !valid_label_name(l))
                {
                    return Err(self.unsupported(format!("label name {bad:?} in label_join()")));
                }
                Ok(Node::LabelJoin {
                    arg,
                    dst,
                    sep,
                    srcs,
                })
            }
            "histogram_count" | "histogram_sum" | "histogram_fraction" | "histogram_avg"
            | "histogram_stddev" | "histogram_stdvar" | "histogram_quantiles" => {
                Err(self.unsupported(format!(
                    "function {name:?} (native histograms are experimental in Prometheus 2.42; canopy keeps classic _bucket series only)"
                )))
            }
            _ => Err(self.unsupported(format!("function {name:?} (not in Prometheus 2.42)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_equal_for_spellings_of_one_expression_only() {
        for (a, b) in [
            (
                "sum(rate(x{mode!=\"idle\"}[5m])) by (instance)",
                "sum by (instance) (\n  rate(x{mode!=\"idle\"}[5m])\n)",
            ),
            ("avg(1 - a / b)", "  avg( 1-a/b )  "),
            ("x{a=\"1\",b=\"2\"}", "x{ a = \"1\" , b = \"2\" }"),
            ("rate(x[300s])", "rate(x[5m])"),
        ] {
            assert_eq!(canonical(a), canonical(b), "{a} / {b}");
        }
        for (a, b) in [
            ("rate(x[5m])", "rate(x[10m])"),
            ("avg(x)", "sum(x)"),
            ("x{a=\"1\"}", "x{a=\"2\"}"),
            ("a - b", "b - a"),
            ("sum by (a) (x)", "sum without (a) (x)"),
        ] {
            assert_ne!(canonical(a), canonical(b), "{a} / {b}");
        }
        assert_eq!(canonical(" rate(x[5m] "), "rate(x[5m]");
    }

    #[test]
    fn durations_without_a_unit_are_refused_as_prometheus_2_42_does() {
        // The last one was found by fuzzing: promql-parser panicked on a range too large for a
        // Duration.
        for expr in [
            "rate(x[300])",
            "rate(x[ 1e400 ])",
            "max_over_time(rate(x[5m])[1h:60])",
            "x offset 60",
            "x OFFSET -1e99",
            "rate(x[Inf])",
            "rate(x[0x10])",
            "sum(in(re(uests_total{job=~\"a+|b\"}[4111111111111111111111111111111111114])) 1@ )",
        ] {
            let err = parse_expr(expr).expect_err(expr);
            assert!(err.contains("missing unit character"), "{expr}: {err}");
            assert!(matches!(Plan::parse(expr), Err(PlanError::Parse { .. })));
        }
        // Brackets and the word inside strings, names and label lists are left alone.
        for expr in [
            "rate(x{path=\"[300]\"}[5m])",
            "x{a='offset 5'} offset 5m",
            "max_over_time(rate(x[5m])[1h:1m]) offset -5m",
            "sum by (offset) (x_offset)",
            "x offset 1h @ 100",
        ] {
            assert!(unitless_duration(expr).is_none(), "{expr}");
        }
    }

    fn refused(expr: &str) -> String {
        match Plan::parse(expr) {
            Err(PlanError::Unsupported { expr: e, construct }) => {
                assert_eq!(e, expr);
                construct
            }
            other => panic!("{expr}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn unsupported_constructs_are_named() {
        assert_eq!(
            refused("histogram_count(x)"),
            r#"function "histogram_count" (native histograms are experimental in Prometheus 2.42; canopy keeps classic _bucket series only)"#
        );
        assert_eq!(
            refused("sort_by_label(x, \"a\")"),
            r#"function "sort_by_label" (not in Prometheus 2.42)"#
        );
        assert_eq!(
            refused("limitk(3, x)"),
            r#"aggregation "limitk" (not in Prometheus 2.42)"#
        );
        assert_eq!(
            refused("x @ start()"),
            r#""@ start()" (a stream has no query start: write the time)"#
        );
        assert_eq!(
            refused("rate(x[5m:1m] @ end())"),
            r#""@ end()" (a stream has no query end: write the time)"#
        );
        assert_eq!(
            refused("x[5m:1m]"),
            "subquery as a result (wrap it in a function)"
        );
        assert_eq!(refused("x offset -5m"), "negative offset");
        assert_eq!(
            refused("predict_linear(x[5m] @ 100, 60)"),
            r#""predict_linear" over a range pinned with "@" (Prometheus predicts from the query's start)"#
        );
        assert_eq!(
            refused("max_over_time(x[1d:1s])"),
            "subquery of 86401 steps per evaluation (at most 11000: a coarser resolution or a shorter range)"
        );
        // nested: 61 x 181 evaluations of the innermost expression
        assert!(refused("max_over_time(max_over_time(x[3m:1s])[1h:1m])").contains("11041 steps"));
        assert_eq!(refused("rate(x[20000y])"), "duration beyond 10,000 years");
        assert_eq!(
            refused(r#"{a="1" or b="2"}"#),
            r#""or" between label matchers"#
        );
        assert_eq!(
            refused("x[5m]"),
            "range vector as a result (wrap it in a function)"
        );
        assert_eq!(
            refused(r#"label_replace(x, "a-b", "c", "d", "e")"#),
            r#"destination label name "a-b" in label_replace()"#
        );
        assert_eq!(
            refused(r#"label_replace(x, "a", "c", "d", "(")"#),
            r#"regular expression "(" in label_replace()"#
        );
        assert_eq!(
            refused(r#"count_values("a b", x)"#),
            r#"label name "a b" of "count_values" (invalid)"#
        );
        let e = Plan::parse("histogram_avg(x)").expect_err("refused");
        assert!(e.to_string().contains("native histograms"), "{e}");
        assert!(matches!(
            Plan::parse("rate(x[5m]"),
            Err(PlanError::Parse { .. })
        ));
    }

    #[test]
    fn the_2_42_library_plans() {
        for expr in [
            "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
            "topk(3, x) + bottomk(2, x)",
            "quantile by (a) (0.5, x)",
            r#"count_values without (b) ("v", x)"#,
            "stdvar(x) + group(x)",
            "x > bool 1",
            "1 < bool 2",
            "x and y or z unless w",
            "x / on(a) group_left(b) y",
            "x - ignoring(a) group_right y",
            "x % 3 ^ 2 atan2 y",
            "max_over_time(rate(x[5m])[1h:1m])",
            "quantile_over_time(0.9, x[5m])",
            "predict_linear(x[5m], 3600)",
            "holt_winters(x[5m], 0.5, 0.5)",
            "changes(x[5m]) + resets(x[5m]) + present_over_time(x[5m])",
            "absent(x) or absent_over_time(x[5m])",
            "timestamp(x) - time()",
            "hour() + minute(x) + day_of_week() + day_of_month() + day_of_year() + days_in_month() + month() + year()",
            "round(x, 5) + ceil(x) + floor(x) + sqrt(x) + exp(x) + ln(x) + log2(x) + log10(x) + sgn(x)",
            "sin(x) + cos(x) + tan(x) + asin(x) + acos(x) + atan(x) + sinh(x) + cosh(x) + tanh(x)",
            "asinh(x) + acosh(x) + atanh(x) + deg(x) + rad(x) + pi()",
            "clamp(x, 0, 1)",
            r#"label_join(label_replace(x, "a", "$1", "b", "(.*)"), "c", ",", "a", "b")"#,
            "sort(x) + sort_desc(x)",
            "x @ 1700000000",
            "rate(x[5m] @ 1700000000.5)",
        ] {
            if let Err(e) = Plan::parse(expr) {
                panic!("{expr}: {e}");
            }
        }
    }

    #[test]
    fn subqueries_look_back_over_their_range_offset_and_inner_range() {
        // 1h + 10m offset + rate's 5m
        let p = Plan::parse("max_over_time(rate(x[5m])[1h:1m] offset 10m)").expect("plans");
        assert_eq!(p.lookback_ms(), 75 * 60_000);
        // nested: 30m + (10m + 5m lookback of an instant selector)
        let p = Plan::parse("max_over_time(avg_over_time(x[10m:30s])[30m:1m])").expect("plans");
        assert_eq!(p.lookback_ms(), 45 * 60_000);
        // a selector pinned with @ reads a fixed time
        let p = Plan::parse("x @ 1700000000 + rate(y[2m])").expect("plans");
        assert_eq!(p.lookback_ms(), 2 * 60_000);
        // the prefilter sees every selector, inside subqueries and functions too
        let p = Plan::parse(
            "histogram_quantile(0.9, sum by (le) (rate(a_bucket[5m]))) > on() group_left max_over_time(b[5m:1m]) unless absent(c)",
        )
        .expect("plans");
        let names: Vec<_> = p
            .selectors()
            .filter_map(|s| s.metric_name.clone())
            .collect();
        assert_eq!(names, ["a_bucket", "b", "c"]);
    }

    #[test]
    fn absent_labels_come_from_equality_matchers_only() {
        // 2.42 answers {a="1"} for absent(nope{a="1",b=~"x",c="2",c="3"}) (promtool)
        let e = parser::parse(r#"nope{a="1",b=~"x",c="2",c="3",d=""}"#).expect("parses");
        assert_eq!(absent_labels(&e).to_string(), r#"{a="1"}"#);
        let e = parser::parse("sum(nope)").expect("parses");
        assert!(absent_labels(&e).is_empty());
    }

    #[test]
    fn default_features_plan_with_their_selectors_and_lookback() {
        let p =
            Plan::parse(r#"avg(rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#).expect("plans");
        assert_eq!(p.kind(), Kind::Vector);
        let sels: Vec<&Selector> = p.selectors().collect();
        assert_eq!(sels.len(), 1);
        assert_eq!(
            sels[0].metric_name.as_deref(),
            Some("node_cpu_seconds_total")
        );
        assert_eq!(p.lookback_ms(), 300_000);
        let p = Plan::parse("avg(1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)")
            .expect("plans");
        assert_eq!(p.selectors().count(), 2);
        assert_eq!(p.lookback_ms(), 300_000);
        let p = Plan::parse("sum(rate(kube_pod_container_status_restarts_total[5m])) or vector(0)")
            .expect("plans");
        assert_eq!(p.selectors().count(), 1);
        // range plus offset, the longest of all selectors; instant selectors count 5m
        let p = Plan::parse("rate(a[10m] offset 1h) + b offset 2h").expect("plans");
        assert_eq!(p.lookback_ms(), 2 * 3_600_000 + 300_000);
        let p = Plan::parse("(1 + 2) * -3").expect("plans");
        assert_eq!((p.kind(), p.lookback_ms()), (Kind::Scalar, 0));
        assert!(Plan::parse("clamp_max(abs(-x), scalar(y)) - -vector(1)").is_ok());
    }
}
