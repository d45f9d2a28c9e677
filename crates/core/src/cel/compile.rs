//! The lowered tree (`lower.rs`) compiled at rule load into closures, one per node, each
//! specialised for its field, its comparison and its literal.
//!
//! Walking `Lowered` matches on the node kind, the field and the operator for every
//! vulnerability, in one large recursive function; for `vuln.cvss >= 9.0 && vuln.fixAvailable`
//! that was about 7 ns per vulnerability, more than the native filter in all (benchmark
//! `cel_vs_native`, docs/benchmarks.md). Here those choices are made once: a leaf reads its field
//! as a typed value and applies its operator with nothing left to decide, the top `&&` / `||`
//! calls its operands from the engine's loop, a nested one calls them directly, and nothing
//! allocates per vulnerability.
//!
//! The answers are `Lowered::eval`'s, node for node (the same field readers, the same rules
//! for `&&`, `||` and unknown operands); `compile_tests.rs` compares the two, and the
//! interpreter, on every vulnerability of the reports `lower_tests.rs` uses.

use std::fmt;

use super::lower::{
    fields, str_field, BoolField, Cmp, DoubleField, Env, IntField, ListField, Lowered, StrFn,
};
use crate::engine::Vulnerability;

/// One compiled node: its value for a vulnerability, or `None` where the interpreter answers.
type Pred = Box<dyn Fn(&Vulnerability, &Env<'_>) -> Option<bool> + Send + Sync>;

/// A lowered expression compiled to closures. The top `&&` / `||` is evaluated in place, so
/// that its operands are the only calls through a pointer.
pub(crate) enum Compiled {
    One(Pred),
    All(Box<[Pred]>),
    Any(Box<[Pred]>),
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, n) = match self {
            Compiled::One(_) => ("One", 1),
            Compiled::All(xs) => ("All", xs.len()),
            Compiled::Any(xs) => ("Any", xs.len()),
        };
        write!(f, "Compiled::{kind}({n} closures)")
    }
}

impl Compiled {
    pub(crate) fn new(l: &Lowered) -> Compiled {
        match l {
            Lowered::All(xs) => Compiled::All(xs.iter().map(compile).collect()),
            Lowered::Any(xs) => Compiled::Any(xs.iter().map(compile).collect()),
            other => Compiled::One(compile(other)),
        }
    }

    /// The expression's value for `v`, or `None` where the interpreter must answer (as
    /// `Lowered::eval`).
    #[inline]
    pub(crate) fn eval(&self, v: &Vulnerability, env: &Env<'_>) -> Option<bool> {
        match self {
            Compiled::One(p) => p(v, env),
            Compiled::All(xs) => eval_all(xs, v, env),
            Compiled::Any(xs) => eval_any(xs, v, env),
        }
    }
}

/// `a && b && ...` as `Lowered::eval`: a false operand decides; otherwise an unknown one makes
/// the whole unknown.
#[inline(always)]
fn eval_all(xs: &[Pred], v: &Vulnerability, e: &Env<'_>) -> Option<bool> {
    let mut unknown = false;
    for x in xs {
        match x(v, e) {
            Some(false) => return Some(false),
            Some(true) => {}
            None => unknown = true,
        }
    }
    (!unknown).then_some(true)
}

/// `a || b || ...`: a true operand decides; otherwise an unknown one makes the whole unknown.
#[inline(always)]
fn eval_any(xs: &[Pred], v: &Vulnerability, e: &Env<'_>) -> Option<bool> {
    let mut unknown = false;
    for x in xs {
        match x(v, e) {
            Some(true) => return Some(true),
            Some(false) => {}
            None => unknown = true,
        }
    }
    (!unknown).then_some(false)
}

/// Boxes `f` (a function, so that the closure's argument lifetimes are inferred as the
/// higher-ranked ones `Pred` needs).
fn pred<F>(f: F) -> Pred
where
    F: Fn(&Vulnerability, &Env<'_>) -> Option<bool> + Send + Sync + 'static,
{
    Box::new(f)
}

fn compile(l: &Lowered) -> Pred {
    match l {
        Lowered::Const(b) => {
            let b = *b;
            pred(move |_, _| Some(b))
        }
        Lowered::All(xs) => all(xs.iter().map(compile).collect()),
        Lowered::Any(xs) => any(xs.iter().map(compile).collect()),
        Lowered::Not(a) => {
            let a = compile(a);
            pred(move |v, e| a(v, e).map(|b| !b))
        }
        Lowered::Bool(BoolField::FixAvailable) => pred(|v, _| Some(v.fix_available)),
        Lowered::Bool(BoolField::KnownExploited) => {
            pred(|v, e| Some(e.catalogs.is_known_exploited(v)))
        }
        Lowered::Double(f, cmp, lit) => double(*f, *cmp, *lit),
        Lowered::Int(f, cmp, lit) => int(*f, *cmp, *lit),
        Lowered::Str(f, cmp, lit) => {
            let (f, lit) = (*f, lit.clone());
            match cmp {
                Cmp::Eq => pred(move |v, e| Some(str_field(f, v, e) == lit)),
                Cmp::Ne => pred(move |v, e| Some(str_field(f, v, e) != lit)),
                // `lower` makes only `==` and `!=` of strings; the tree's answer otherwise.
                other => {
                    let cmp = *other;
                    pred(move |v, e| Some(cmp.apply(str_field(f, v, e), lit.as_str())))
                }
            }
        }
        Lowered::StrIn(f, items) => {
            let (f, items) = (*f, items.clone());
            pred(move |v, e| {
                let x = str_field(f, v, e);
                Some(items.iter().any(|i| i == x))
            })
        }
        Lowered::StrCall(f, func, arg) => {
            let (f, arg) = (*f, arg.clone());
            match func {
                StrFn::StartsWith => pred(move |v, e| Some(str_field(f, v, e).starts_with(&*arg))),
                StrFn::EndsWith => pred(move |v, e| Some(str_field(f, v, e).ends_with(&*arg))),
                StrFn::Contains => pred(move |v, e| Some(str_field(f, v, e).contains(&*arg))),
            }
        }
        Lowered::ListHas(f, item) => {
            let item = item.clone();
            match f {
                ListField::Ids => pred(move |v, _| Some(v.ids.contains(&item))),
                ListField::FixedVersions => {
                    pred(move |v, _| Some(v.packages.iter().any(|p| p.fixed.contains(&item))))
                }
                ListField::Groups => pred(move |_, e| Some(e.ctx.groups.contains(&item))),
            }
        }
    }
}

/// A nested `&&` (two operands called directly, more in a loop).
fn all(mut xs: Vec<Pred>) -> Pred {
    if xs.len() == 2 {
        let (b, a) = (xs.pop().expect("two"), xs.pop().expect("two"));
        return pred(move |v, e| match a(v, e) {
            Some(true) => b(v, e),
            Some(false) => Some(false),
            None => match b(v, e) {
                Some(false) => Some(false),
                _ => None,
            },
        });
    }
    pred(move |v, e| eval_all(&xs, v, e))
}

/// A nested `||`.
fn any(mut xs: Vec<Pred>) -> Pred {
    if xs.len() == 2 {
        let (b, a) = (xs.pop().expect("two"), xs.pop().expect("two"));
        return pred(move |v, e| match a(v, e) {
            Some(false) => b(v, e),
            Some(true) => Some(true),
            None => match b(v, e) {
                Some(true) => Some(true),
                _ => None,
            },
        });
    }
    pred(move |v, e| eval_any(&xs, v, e))
}

/// A double field against a literal: unknown when either is NaN (as `Lowered::eval`).
fn double(f: DoubleField, cmp: Cmp, lit: f64) -> Pred {
    if lit.is_nan() {
        return pred(|_, _| None);
    }
    match f {
        DoubleField::Cvss => double_cmp(cmp, lit, |v, _| fields::cvss(v)),
        DoubleField::Epss => double_cmp(cmp, lit, |v, e| fields::epss(e.catalogs, v)),
        DoubleField::EpssPercentile => {
            double_cmp(cmp, lit, |v, e| fields::epss_percentile(e.catalogs, v))
        }
    }
}

fn double_cmp<R>(cmp: Cmp, lit: f64, read: R) -> Pred
where
    R: Fn(&Vulnerability, &Env<'_>) -> f64 + Send + Sync + 'static,
{
    macro_rules! leaf {
        ($op:tt) => {
            pred(move |v, e| {
                let x = read(v, e);
                if x.is_nan() {
                    None
                } else {
                    Some(x $op lit)
                }
            })
        };
    }
    match cmp {
        Cmp::Eq => leaf!(==),
        Cmp::Ne => leaf!(!=),
        Cmp::Lt => leaf!(<),
        Cmp::Le => leaf!(<=),
        Cmp::Gt => leaf!(>),
        Cmp::Ge => leaf!(>=),
    }
}

fn int(f: IntField, cmp: Cmp, lit: i64) -> Pred {
    match f {
        IntField::SeverityRank => int_cmp(cmp, lit, |v, _| fields::severity_rank(v)),
        IntField::AgeDays => int_cmp(cmp, lit, |v, e| fields::age_days(e.now, v)),
    }
}

fn int_cmp<R>(cmp: Cmp, lit: i64, read: R) -> Pred
where
    R: Fn(&Vulnerability, &Env<'_>) -> i64 + Send + Sync + 'static,
{
    macro_rules! leaf {
        ($op:tt) => {
            pred(move |v, e| Some(read(v, e) $op lit))
        };
    }
    match cmp {
        Cmp::Eq => leaf!(==),
        Cmp::Ne => leaf!(!=),
        Cmp::Lt => leaf!(<),
        Cmp::Le => leaf!(<=),
        Cmp::Gt => leaf!(>),
        Cmp::Ge => leaf!(>=),
    }
}
