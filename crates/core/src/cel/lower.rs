//! CEL conditions lowered to a small tree, which `compile.rs` turns into the closures the engine
//! runs without the CEL interpreter.
//!
//! The `cel` crate interprets the expression's AST on every call: it builds a context,
//! resolves the variables through trait objects and boxes every value it reads. For the
//! expressions rules are made of (comparisons of one field with a literal, joined by `&&`,
//! `||` and `!`) that costs about 100 times the native condition fields (benchmark
//! `cel_vs_native` in crates/core/benches/core.rs, docs/benchmarks.md). No maintained crate
//! compiles CEL to native code, so this module does it for that subset, by hand:
//!
//! - Only what cannot fail is lowered: a field of `vuln`, `image` or `workload` compared with a
//!   literal of the field's own type (`==`, `!=`, `<`, `<=`, `>`, `>=`; strings `==`, `!=`),
//!   `field in [literals]`, `'literal' in listField`, `startsWith`/`endsWith`/`contains` with a
//!   literal argument, boolean fields, `&&`, `||`, `!`, `true`, `false`. Anything else (mixed
//!   numeric types, map indexing, macros, arithmetic, ternaries) keeps the interpreter: the
//!   whole expression is lowered or none of it.
//! - A lowered node answers `None` where CEL's answer could differ from a plain comparison
//!   (a NaN score); the caller then asks the interpreter, so the result is CEL's in every case.
//! - `a && b` / `a || b` follow CEL: `false && x` is false and `true || x` is true whatever `x`
//!   is; otherwise the answer is `b`'s, or unknown.
//!
//! The field values come from the same functions the interpreter's variables use (`fields`
//! below), so the two cannot read a field differently; a test compares both on every
//! vulnerability of real reports for a list of expressions and for generated ones.

use ::cel::common::ast::{operators, Expr, IdedExpr, LiteralValue};
use chrono::{DateTime, Utc};

use crate::engine::{RequestContext, Vulnerability};
use crate::exploit::Catalogs;
use crate::image::ImageRef;

/// What a lowered condition reads, besides the vulnerability.
pub(crate) struct Env<'a> {
    pub catalogs: &'a Catalogs,
    pub image: &'a ImageRef,
    pub ctx: &'a RequestContext,
    pub now: DateTime<Utc>,
}

/// The values of the fields, shared with the interpreter's variables (`super::VulnVal`, ...).
pub(crate) mod fields {
    use super::*;

    pub fn cvss(v: &Vulnerability) -> f64 {
        f64::from(v.cvss.unwrap_or(0.0))
    }
    pub fn severity_rank(v: &Vulnerability) -> i64 {
        i64::from(v.severity.rank())
    }
    pub fn fixed_version(v: &Vulnerability) -> &str {
        v.packages
            .iter()
            .find_map(|p| p.fixed.first())
            .map(String::as_str)
            .unwrap_or("")
    }
    pub fn fixed_versions(v: &Vulnerability) -> Vec<&str> {
        let mut all: Vec<&str> = v
            .packages
            .iter()
            .flat_map(|p| p.fixed.iter().map(String::as_str))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
    pub fn epss(c: &Catalogs, v: &Vulnerability) -> f64 {
        c.epss_of(v).map(|(_, s)| f64::from(s.score)).unwrap_or(0.0)
    }
    pub fn epss_percentile(c: &Catalogs, v: &Vulnerability) -> f64 {
        c.epss_of(v)
            .map(|(_, s)| f64::from(s.percentile))
            .unwrap_or(0.0)
    }
    pub fn age_days(now: DateTime<Utc>, v: &Vulnerability) -> i64 {
        v.published
            .map(|p| now.signed_duration_since(p).num_days())
            .unwrap_or(-1)
    }
    pub fn opt(s: &Option<String>) -> &str {
        s.as_deref().unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn of(func: &str) -> Option<Cmp> {
        Some(match func {
            operators::EQUALS => Cmp::Eq,
            operators::NOT_EQUALS => Cmp::Ne,
            operators::LESS => Cmp::Lt,
            operators::LESS_EQUALS => Cmp::Le,
            operators::GREATER => Cmp::Gt,
            operators::GREATER_EQUALS => Cmp::Ge,
            _ => return None,
        })
    }
    /// The comparison with its operands swapped (`9.0 <= vuln.cvss` is `vuln.cvss >= 9.0`).
    fn swapped(self) -> Cmp {
        match self {
            Cmp::Lt => Cmp::Gt,
            Cmp::Le => Cmp::Ge,
            Cmp::Gt => Cmp::Lt,
            Cmp::Ge => Cmp::Le,
            same => same,
        }
    }
    pub(crate) fn apply<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum DoubleField {
    Cvss,
    Epss,
    EpssPercentile,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum IntField {
    SeverityRank,
    AgeDays,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum BoolField {
    FixAvailable,
    KnownExploited,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum StrField {
    Id,
    Severity,
    FixedVersion,
    ImageReference,
    ImageRegistry,
    ImageRepository,
    ImageTag,
    ImageDigest,
    Cluster,
    Namespace,
    Name,
    Kind,
    Pod,
    User,
    ServiceAccount,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ListField {
    Ids,
    FixedVersions,
    Groups,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum StrFn {
    StartsWith,
    EndsWith,
    Contains,
}

/// A lowered expression (a boolean).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lowered {
    Const(bool),
    /// `a && b && ...`, flattened.
    All(Vec<Lowered>),
    /// `a || b || ...`, flattened.
    Any(Vec<Lowered>),
    Not(Box<Lowered>),
    Bool(BoolField),
    Double(DoubleField, Cmp, f64),
    Int(IntField, Cmp, i64),
    Str(StrField, Cmp, String),
    StrIn(StrField, Vec<String>),
    StrCall(StrField, StrFn, String),
    ListHas(ListField, String),
}

enum Field {
    Double(DoubleField),
    Int(IntField),
    Bool(BoolField),
    Str(StrField),
    List(ListField),
}

fn field(e: &Expr) -> Option<Field> {
    let Expr::Select(s) = e else { return None };
    if s.test {
        return None;
    }
    let Expr::Ident(root) = &s.operand.expr else {
        return None;
    };
    use Field as F;
    Some(match (root.as_str(), s.field.as_str()) {
        ("vuln", "cvss") => F::Double(DoubleField::Cvss),
        ("vuln", "epss") => F::Double(DoubleField::Epss),
        ("vuln", "epssPercentile") => F::Double(DoubleField::EpssPercentile),
        ("vuln", "severityRank") => F::Int(IntField::SeverityRank),
        ("vuln", "ageDays") => F::Int(IntField::AgeDays),
        ("vuln", "fixAvailable") => F::Bool(BoolField::FixAvailable),
        ("vuln", "knownExploited") => F::Bool(BoolField::KnownExploited),
        ("vuln", "id") => F::Str(StrField::Id),
        ("vuln", "severity") => F::Str(StrField::Severity),
        ("vuln", "fixedVersion") => F::Str(StrField::FixedVersion),
        ("vuln", "ids") => F::List(ListField::Ids),
        ("vuln", "fixedVersions") => F::List(ListField::FixedVersions),
        ("image", "reference") => F::Str(StrField::ImageReference),
        ("image", "registry") => F::Str(StrField::ImageRegistry),
        ("image", "repository") => F::Str(StrField::ImageRepository),
        ("image", "tag") => F::Str(StrField::ImageTag),
        ("image", "digest") => F::Str(StrField::ImageDigest),
        ("workload", "cluster") => F::Str(StrField::Cluster),
        ("workload", "namespace") => F::Str(StrField::Namespace),
        ("workload", "name") => F::Str(StrField::Name),
        ("workload", "kind") => F::Str(StrField::Kind),
        ("workload", "pod") => F::Str(StrField::Pod),
        ("workload", "user") => F::Str(StrField::User),
        ("workload", "serviceAccount") => F::Str(StrField::ServiceAccount),
        ("workload", "groups") => F::List(ListField::Groups),
        _ => return None,
    })
}

fn literal(e: &Expr) -> Option<&LiteralValue> {
    match e {
        Expr::Literal(l) => Some(l),
        _ => None,
    }
}

fn string_literal(e: &Expr) -> Option<String> {
    match literal(e)? {
        LiteralValue::String(s) => Some(s.inner().to_string()),
        _ => None,
    }
}

/// Lowers `e`, or `None` when any part of it is outside the subset (the module's doc).
pub(crate) fn lower(e: &IdedExpr) -> Option<Lowered> {
    let e = &e.expr;
    match e {
        Expr::Literal(LiteralValue::Boolean(b)) => Some(Lowered::Const(*b.inner())),
        Expr::Select(_) => match field(e)? {
            Field::Bool(f) => Some(Lowered::Bool(f)),
            _ => None,
        },
        Expr::Call(c) => {
            let args = &c.args;
            match (c.func_name.as_str(), &c.target, args.len()) {
                (operators::LOGICAL_AND, None, 2) => {
                    let mut all = Vec::new();
                    for a in args {
                        match lower(a)? {
                            Lowered::All(xs) => all.extend(xs),
                            x => all.push(x),
                        }
                    }
                    Some(Lowered::All(all))
                }
                (operators::LOGICAL_OR, None, 2) => {
                    let mut any = Vec::new();
                    for a in args {
                        match lower(a)? {
                            Lowered::Any(xs) => any.extend(xs),
                            x => any.push(x),
                        }
                    }
                    Some(Lowered::Any(any))
                }
                (operators::LOGICAL_NOT, None, 1) => Some(Lowered::Not(Box::new(lower(&args[0])?))),
                (operators::IN, None, 2) => lower_in(&args[0].expr, &args[1].expr),
                ("startsWith" | "endsWith" | "contains", Some(target), 1) => {
                    let Field::Str(f) = field(&target.expr)? else {
                        return None;
                    };
                    let arg = string_literal(&args[0].expr)?;
                    let func = match c.func_name.as_str() {
                        "startsWith" => StrFn::StartsWith,
                        "endsWith" => StrFn::EndsWith,
                        _ => StrFn::Contains,
                    };
                    Some(Lowered::StrCall(f, func, arg))
                }
                (name, None, 2) => {
                    let cmp = Cmp::of(name)?;
                    let (a, b) = (&args[0].expr, &args[1].expr);
                    if let (Some(f), Some(l)) = (field(a), literal(b)) {
                        compare(f, cmp, l)
                    } else if let (Some(l), Some(f)) = (literal(a), field(b)) {
                        compare(f, cmp.swapped(), l)
                    } else {
                        None
                    }
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// `field <cmp> literal`, when both have the same type.
fn compare(f: Field, cmp: Cmp, l: &LiteralValue) -> Option<Lowered> {
    Some(match (f, l) {
        (Field::Double(f), LiteralValue::Double(d)) => Lowered::Double(f, cmp, *d.inner()),
        (Field::Int(f), LiteralValue::Int(i)) => Lowered::Int(f, cmp, *i.inner()),
        (Field::Str(f), LiteralValue::String(s)) if matches!(cmp, Cmp::Eq | Cmp::Ne) => {
            Lowered::Str(f, cmp, s.inner().to_string())
        }
        (Field::Bool(f), LiteralValue::Boolean(b)) if matches!(cmp, Cmp::Eq | Cmp::Ne) => {
            // `vuln.fixAvailable == true` is the field; `!= true` its negation.
            let is = Lowered::Bool(f);
            if (cmp == Cmp::Eq) == *b.inner() {
                is
            } else {
                Lowered::Not(Box::new(is))
            }
        }
        _ => return None,
    })
}

/// `stringField in ['a', 'b']` or `'a' in listField`.
fn lower_in(item: &Expr, list: &Expr) -> Option<Lowered> {
    if let (Some(Field::Str(f)), Expr::List(l)) = (field(item), list) {
        let items = l
            .elements
            .iter()
            .map(|x| string_literal(&x.expr))
            .collect::<Option<Vec<_>>>()?;
        return Some(Lowered::StrIn(f, items));
    }
    if let (Some(s), Some(Field::List(f))) = (string_literal(item), field(list)) {
        return Some(Lowered::ListHas(f, s));
    }
    None
}

impl Lowered {
    /// The expression's value for `v`, or `None` where the interpreter must answer. The
    /// engine runs the compiled form (`compile.rs`); tests compare the two.
    #[cfg(test)]
    pub(crate) fn eval(&self, v: &Vulnerability, env: &Env<'_>) -> Option<bool> {
        match self {
            // CEL's `&&` and `||` are commutative over errors: `false && error` is false and
            // `true || error` true; with no decisive operand an unknown one makes it unknown.
            Lowered::All(xs) => {
                let mut unknown = false;
                for x in xs {
                    match x.eval_inline(v, env) {
                        Some(false) => return Some(false),
                        Some(true) => {}
                        None => unknown = true,
                    }
                }
                (!unknown).then_some(true)
            }
            Lowered::Any(xs) => {
                let mut unknown = false;
                for x in xs {
                    match x.eval_inline(v, env) {
                        Some(true) => return Some(true),
                        Some(false) => {}
                        None => unknown = true,
                    }
                }
                (!unknown).then_some(false)
            }
            leaf => leaf.eval_inline(v, env),
        }
    }

    /// A leaf evaluated in place (the common case: the operands of `&&` and `||`), a
    /// composite through `eval`.
    #[cfg(test)]
    fn eval_inline(&self, v: &Vulnerability, env: &Env<'_>) -> Option<bool> {
        match self {
            Lowered::Const(b) => Some(*b),
            Lowered::All(_) | Lowered::Any(_) => self.eval(v, env),
            Lowered::Not(a) => a.eval(v, env).map(|b| !b),
            Lowered::Bool(f) => Some(match f {
                BoolField::FixAvailable => v.fix_available,
                BoolField::KnownExploited => env.catalogs.is_known_exploited(v),
            }),
            Lowered::Double(f, cmp, lit) => {
                let x = match f {
                    DoubleField::Cvss => fields::cvss(v),
                    DoubleField::Epss => fields::epss(env.catalogs, v),
                    DoubleField::EpssPercentile => fields::epss_percentile(env.catalogs, v),
                };
                if x.is_nan() || lit.is_nan() {
                    return None;
                }
                Some(cmp.apply(x, *lit))
            }
            Lowered::Int(f, cmp, lit) => {
                let x = match f {
                    IntField::SeverityRank => fields::severity_rank(v),
                    IntField::AgeDays => fields::age_days(env.now, v),
                };
                Some(cmp.apply(x, *lit))
            }
            Lowered::Str(f, cmp, lit) => Some(cmp.apply(str_field(*f, v, env), lit.as_str())),
            Lowered::StrIn(f, items) => {
                let x = str_field(*f, v, env);
                Some(items.iter().any(|i| i == x))
            }
            Lowered::StrCall(f, func, arg) => {
                let x = str_field(*f, v, env);
                Some(match func {
                    StrFn::StartsWith => x.starts_with(arg.as_str()),
                    StrFn::EndsWith => x.ends_with(arg.as_str()),
                    StrFn::Contains => x.contains(arg.as_str()),
                })
            }
            Lowered::ListHas(f, item) => Some(match f {
                ListField::Ids => v.ids.iter().any(|i| i == item),
                ListField::FixedVersions => {
                    v.packages.iter().any(|p| p.fixed.iter().any(|x| x == item))
                }
                ListField::Groups => env.ctx.groups.iter().any(|g| g == item),
            }),
        }
    }
}

pub(crate) fn str_field<'a>(f: StrField, v: &'a Vulnerability, env: &Env<'a>) -> &'a str {
    let (i, c) = (env.image, env.ctx);
    match f {
        StrField::Id => &v.id,
        StrField::Severity => v.severity.as_str(),
        StrField::FixedVersion => fields::fixed_version(v),
        StrField::ImageReference => &i.original,
        StrField::ImageRegistry => &i.registry,
        StrField::ImageRepository => &i.repository,
        StrField::ImageTag => fields::opt(&i.tag),
        StrField::ImageDigest => fields::opt(&i.digest),
        StrField::Cluster => fields::opt(&c.cluster),
        StrField::Namespace => fields::opt(&c.namespace),
        StrField::Name => fields::opt(&c.workload_name),
        StrField::Kind => fields::opt(&c.workload_kind),
        StrField::Pod => fields::opt(&c.pod),
        StrField::User => fields::opt(&c.user),
        StrField::ServiceAccount => c.service_account().unwrap_or_default(),
    }
}
