//! Lowering a feature expression to canopy's plan tree.
//!
//! Owns the decision of what canopy supports: `promql-parser` accepts all of PromQL, and this
//! module turns exactly the subset README.md lists into [`Node`]s and refuses everything else
//! with an error naming the construct, so a bad feature fails at config load and never at an
//! evaluation step. It also answers the two questions the agent asks before any sample arrives:
//! which selectors a plan reads (the ingest prefilter) and how far back it looks (retention).
//! It must not read the store or evaluate anything.

use promql_parser::label::Matcher;
use promql_parser::parser::{
    self, AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, Offset, VectorMatchCardinality,
    VectorSelector,
};

use crate::series::Selector;

/// How far back an instant selector looks for its newest sample (Prometheus's default
/// `--query.lookback-delta`).
pub const LOOKBACK_DELTA_MS: i64 = 5 * 60 * 1000;

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
pub enum Kind {
    Scalar,
    Vector,
}

/// The supported functions of a range vector; each yields at most one value per series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFunc {
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
            _ => return None,
        })
    }
}

/// The supported aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Stddev,
}

/// The supported arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl ArithOp {
    /// Go's float64 operators are IEEE 754, as Rust's are: division by zero gives ±Inf or NaN.
    pub fn apply(self, l: f64, r: f64) -> f64 {
        match self {
            ArithOp::Add => l + r,
            ArithOp::Sub => l - r,
            ArithOp::Mul => l * r,
            ArithOp::Div => l / r,
        }
    }
}

/// Which labels identify a series when two vectors are matched or a vector is grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelSet {
    /// `on(...)` / `by(...)`: only these.
    Only(Vec<String>),
    /// `ignoring(...)` / `without(...)`: all but these (and never `__name__`).
    AllBut(Vec<String>),
}

/// One selector as the plan reads it: what it matches and which window relative to T.
#[derive(Debug, Clone)]
pub struct SelectorUse {
    pub selector: Selector,
    /// The selector's text and range without offset: identical selectors share evaluator caches.
    pub key: String,
    /// `offset` in ms (never negative: Prometheus 2.42 refuses negative offsets by default).
    pub offset_ms: i64,
    /// The range in ms, `None` for an instant selector.
    pub range_ms: Option<i64>,
}

impl SelectorUse {
    /// How far before T this selector reads.
    pub fn lookback_ms(&self) -> i64 {
        self.range_ms.unwrap_or(LOOKBACK_DELTA_MS) + self.offset_ms
    }
}

/// canopy's plan tree: one node per supported construct, parentheses gone.
#[derive(Debug, Clone)]
pub enum Node {
    Number(f64),
    /// Index into [`Plan::selectors`].
    Instant(usize),
    Range {
        func: RangeFunc,
        selector: usize,
    },
    Aggregate {
        op: AggOp,
        grouping: LabelSet,
        arg: Box<Node>,
    },
    Arith {
        op: ArithOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
        /// For vector–vector only; scalar operands ignore it.
        matching: LabelSet,
    },
    Or {
        lhs: Box<Node>,
        rhs: Box<Node>,
        matching: LabelSet,
    },
    Neg(Box<Node>),
    /// `vector(s)`
    Vector(Box<Node>),
    /// `scalar(v)`
    Scalar(Box<Node>),
    Abs(Box<Node>),
    ClampMin(Box<Node>, Box<Node>),
    ClampMax(Box<Node>, Box<Node>),
}

impl Node {
    pub fn kind(&self) -> Kind {
        match self {
            Node::Number(_) | Node::Scalar(_) => Kind::Scalar,
            Node::Arith { lhs, rhs, .. } => {
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

/// `expr` in canonical form: parsed and printed back by `promql-parser`, so that two spellings
/// of one expression (spacing, line breaks, `sum(x) by (a)` and `sum by (a) (x)`) compare equal.
/// An expression that does not parse is only trimmed.
pub fn canonical(expr: &str) -> String {
    parser::parse(expr).map_or_else(|_| expr.trim().to_owned(), |ast| ast.to_string())
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
        let ast = parser::parse(expr).map_err(|reason| PlanError::Parse {
            expr: expr.to_owned(),
            reason,
        })?;
        let mut lower = Lower {
            expr,
            selectors: Vec::new(),
        };
        let root = lower.node(&ast)?;
        Ok(Plan {
            expr: expr.to_owned(),
            root,
            selectors: lower.selectors,
        })
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn root(&self) -> &Node {
        &self.root
    }

    /// Whether the plan yields a scalar or an instant vector.
    pub fn kind(&self) -> Kind {
        self.root.kind()
    }

    /// Every selector the plan reads, in the order they appear in the expression.
    pub fn selector_uses(&self) -> &[SelectorUse] {
        &self.selectors
    }

    /// The selectors the ingest prefilter must let through for this plan.
    pub fn selectors(&self) -> impl Iterator<Item = &Selector> + '_ {
        self.selectors.iter().map(|s| &s.selector)
    }

    /// The longest look-back of any selector (range or 5m lookback, plus offset), in ms: how
    /// much history the store must retain behind T for this plan.
    pub fn lookback_ms(&self) -> i64 {
        self.selectors
            .iter()
            .map(SelectorUse::lookback_ms)
            .max()
            .unwrap_or(0)
    }
}

struct Lower<'e> {
    expr: &'e str,
    selectors: Vec<SelectorUse>,
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
            Expr::Subquery(_) => Err(self.unsupported("subquery")),
            Expr::StringLiteral(_) => Err(self.unsupported("string literal")),
            Expr::Extension(_) => Err(self.unsupported("extension expression")),
        }
    }

    fn selector(&mut self, vs: &VectorSelector, range_ms: Option<i64>) -> Result<usize, PlanError> {
        if vs.at.is_some() {
            return Err(self.unsupported("\"@\" modifier"));
        }
        if !vs.matchers.or_matchers.is_empty() {
            return Err(self.unsupported("\"or\" between label matchers"));
        }
        let offset_ms = match &vs.offset {
            None => 0,
            Some(Offset::Pos(d)) => self.millis(d)?,
            // Prometheus 2.42 refuses these unless started with --enable-feature=promql-negative-offset.
            Some(Offset::Neg(_)) => return Err(self.unsupported("negative offset")),
        };
        let matchers: &[Matcher] = &vs.matchers.matchers;
        let mut bare = vs.clone();
        bare.offset = None;
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
        });
        Ok(self.selectors.len() - 1)
    }

    fn millis(&self, d: &std::time::Duration) -> Result<i64, PlanError> {
        i64::try_from(d.as_millis())
            .ok()
            .filter(|&ms| ms <= MAX_DURATION_MS)
            .ok_or_else(|| self.unsupported("duration beyond 10,000 years"))
    }

    fn aggregate(&mut self, a: &AggregateExpr) -> Result<Node, PlanError> {
        let name = a.op.to_string();
        let op = match name.as_str() {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "count" => AggOp::Count,
            "stddev" => AggOp::Stddev,
            _ => return Err(self.unsupported(format!("aggregation {name:?}"))),
        };
        if a.param.is_some() {
            return Err(self.unsupported(format!("parameter of aggregation {name:?}")));
        }
        let grouping = match &a.modifier {
            None => LabelSet::Only(Vec::new()),
            Some(LabelModifier::Include(l)) => LabelSet::Only(l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => LabelSet::AllBut(l.labels.clone()),
        };
        let arg = self.node(&a.expr)?;
        Ok(Node::Aggregate {
            op,
            grouping,
            arg: Box::new(arg),
        })
    }

    fn binary(&mut self, b: &BinaryExpr) -> Result<Node, PlanError> {
        let name = b.op.to_string();
        if b.op.is_comparison_operator() {
            return Err(self.unsupported(format!("comparison operator {name:?}")));
        }
        let is_or = name == "or";
        let op = match name.as_str() {
            "+" => Some(ArithOp::Add),
            "-" => Some(ArithOp::Sub),
            "*" => Some(ArithOp::Mul),
            "/" => Some(ArithOp::Div),
            "or" => None,
            _ => return Err(self.unsupported(format!("binary operator {name:?}"))),
        };
        let mut matching = LabelSet::AllBut(Vec::new());
        if let Some(m) = &b.modifier {
            if m.return_bool {
                return Err(self.unsupported("\"bool\" modifier"));
            }
            if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                return Err(self.unsupported("fill modifier"));
            }
            match &m.card {
                VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany => {}
                VectorMatchCardinality::ManyToOne(_) => {
                    return Err(self.unsupported("\"group_left\" modifier"));
                }
                VectorMatchCardinality::OneToMany(_) => {
                    return Err(self.unsupported("\"group_right\" modifier"));
                }
            }
            match &m.matching {
                None => {}
                Some(LabelModifier::Include(l)) => matching = LabelSet::Only(l.labels.clone()),
                Some(LabelModifier::Exclude(l)) => matching = LabelSet::AllBut(l.labels.clone()),
            }
        }
        let lhs = Box::new(self.node(&b.lhs)?);
        let rhs = Box::new(self.node(&b.rhs)?);
        match op {
            Some(op) => Ok(Node::Arith {
                op,
                lhs,
                rhs,
                matching,
            }),
            None if is_or && lhs.kind() == Kind::Vector && rhs.kind() == Kind::Vector => {
                Ok(Node::Or { lhs, rhs, matching })
            }
            None => Err(self.unsupported("\"or\" between scalars")),
        }
    }

    fn call(&mut self, c: &Call) -> Result<Node, PlanError> {
        let name = c.func.name;
        let args = &c.args.args;
        let expr = self.expr;
        let arity = |n: usize| -> Result<(), PlanError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(PlanError::Unsupported {
                    expr: expr.to_owned(),
                    construct: format!("{} arguments to function {name:?}", args.len()),
                })
            }
        };
        if let Some(func) = RangeFunc::from_name(name) {
            arity(1)?;
            let mut arg: &Expr = &args[0];
            while let Expr::Paren(p) = arg {
                arg = &p.expr;
            }
            return match arg {
                Expr::MatrixSelector(ms) => {
                    let range_ms = self.millis(&ms.range)?;
                    let selector = self.selector(&ms.vs, Some(range_ms))?;
                    Ok(Node::Range { func, selector })
                }
                Expr::Subquery(_) => Err(self.unsupported("subquery")),
                _ => Err(self.unsupported(format!(
                    "argument to function {name:?} (a range selector is required)"
                ))),
            };
        }
        let mut arg = |i: usize, want: Kind| -> Result<Box<Node>, PlanError> {
            let n = self.node(&args[i])?;
            if n.kind() != want {
                return Err(self.unsupported(format!("argument type to function {name:?}")));
            }
            Ok(Box::new(n))
        };
        match name {
            "vector" => {
                arity(1)?;
                Ok(Node::Vector(arg(0, Kind::Scalar)?))
            }
            "scalar" => {
                arity(1)?;
                Ok(Node::Scalar(arg(0, Kind::Vector)?))
            }
            "abs" => {
                arity(1)?;
                Ok(Node::Abs(arg(0, Kind::Vector)?))
            }
            "clamp_min" => {
                arity(2)?;
                Ok(Node::ClampMin(arg(0, Kind::Vector)?, arg(1, Kind::Scalar)?))
            }
            "clamp_max" => {
                arity(2)?;
                Ok(Node::ClampMax(arg(0, Kind::Vector)?, arg(1, Kind::Scalar)?))
            }
            _ => Err(self.unsupported(format!("function {name:?}"))),
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
            refused("histogram_quantile(0.9, rate(x[5m]))"),
            r#"function "histogram_quantile""#
        );
        assert_eq!(refused("topk(3, x)"), r#"aggregation "topk""#);
        assert_eq!(refused("quantile(0.5, x)"), r#"aggregation "quantile""#);
        assert_eq!(refused("x > 1"), r#"comparison operator ">""#);
        assert_eq!(refused("x and y"), r#"binary operator "and""#);
        assert_eq!(refused("x ^ 2"), r#"binary operator "^""#);
        assert_eq!(
            refused("x / on(a) group_left y"),
            r#""group_left" modifier"#
        );
        assert_eq!(refused("x @ 100"), r#""@" modifier"#);
        assert_eq!(refused("rate(x[5m:1m])"), "subquery");
        assert_eq!(refused("x offset -5m"), "negative offset");
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
            refused("label_replace(x, \"a\", \"b\", \"c\", \"d\")"),
            r#"function "label_replace""#
        );
        let e = Plan::parse("histogram_quantile(0.9, x)").expect_err("refused");
        assert!(
            e.to_string()
                .contains(r#"unsupported function "histogram_quantile""#),
            "{e}"
        );
        assert!(matches!(
            Plan::parse("rate(x[5m]"),
            Err(PlanError::Parse { .. })
        ));
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
