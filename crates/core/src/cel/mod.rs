//! CEL conditions (`{cel: "vuln.cvss >= 9.0 && vuln.fixedVersion != ''"}`), on the `cel` crate.
//!
//! An expression is compiled when its rule is loaded: a syntax error, a variable other than
//! `vuln`, `image` and `workload`, or a field those do not have is an error on the rule. At
//! evaluation the three variables are read on access from the engine's own data (nothing is
//! copied into a map per vulnerability), which keeps a CEL condition close to a native one.
//!
//! Expressions made of field-against-literal comparisons are also lowered to a tree (`lower.rs`)
//! and compiled to closures the engine runs without the interpreter (`compile.rs`), with the
//! same results.
//!
//! A vulnerability counts when the expression is `true`. An expression that fails at run time
//! (a type error, a non-boolean result) counts too, and the reason says so: a broken condition
//! must not let an image through silently.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use ::cel::common::ast::{EntryExpr, Expr};
use ::cel::common::traits::Indexer;
use ::cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelString, Type, DYN_TYPE,
};
use ::cel::common::value::{CowVal, Val};
use ::cel::context::VariableResolver;
use ::cel::{Context, Env, ExecutionError, Program, Value};
use chrono::{DateTime, Utc};

use crate::engine::{RequestContext, Vulnerability};
use crate::exploit::Catalogs;
use crate::image::ImageRef;

mod compile;
#[cfg(test)]
mod compile_tests;
mod lower;
#[cfg(test)]
mod lower_tests;
use compile::Compiled;
use lower::{fields, Lowered};

/// The fields of `vuln`, `image` and `workload` (documented in docs/rules.md).
pub const VULN_FIELDS: &[&str] = &[
    "id",
    "ids",
    "severity",
    "severityRank",
    "cvss",
    "fixAvailable",
    "fixedVersion",
    "fixedVersions",
    "packages",
    "knownExploited",
    "epss",
    "epssPercentile",
    "published",
    "ageDays",
];
pub const IMAGE_FIELDS: &[&str] = &["reference", "registry", "repository", "tag", "digest"];
pub const WORKLOAD_FIELDS: &[&str] = &[
    "cluster",
    "namespace",
    "name",
    "kind",
    "pod",
    "labels",
    "user",
    "groups",
    "serviceAccount",
];

/// Longest CEL expression a rule may hold, in bytes.
pub const MAX_CEL_BYTES: usize = 4096;
/// Deepest nesting of brackets and unary operators a CEL expression may have.
pub const MAX_CEL_NESTING: usize = 32;

/// Nesting depth: open brackets outside string literals, plus runs of unary `!` / `-`.
fn nesting(src: &str) -> usize {
    let (mut depth, mut max, mut unary) = (0usize, 0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in src.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if c == '!' || c == '-' {
            unary += 1;
        } else if !c.is_whitespace() {
            unary = 0;
        }
        max = max.max(depth + unary);
    }
    max
}

const PARSE_STACK_BYTES: usize = 64 << 20;

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A compiled CEL condition.
#[derive(Debug, Clone)]
pub struct CelCondition {
    source: String,
    program: Arc<Program>,
    /// The expression lowered (`lower.rs`), when it is in the subset that can be.
    lowered: Option<Arc<Lowered>>,
    /// `lowered` compiled to closures (`compile.rs`): what the engine evaluates.
    compiled: Option<Arc<Compiled>>,
}

impl PartialEq for CelCondition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl CelCondition {
    /// Compiles and checks `source`. The error says what is wrong, for the rule's error.
    pub fn compile(source: &str) -> Result<CelCondition, String> {
        if source.trim().is_empty() {
            return Err("empty CEL expression".into());
        }
        // The parser recurses per nesting level and overflows the stack (an abort, not an
        // error) on a deeply nested expression: bound the length and the nesting first.
        if source.len() > MAX_CEL_BYTES {
            return Err(format!(
                "CEL expression of {} bytes, more than the limit of {MAX_CEL_BYTES}",
                source.len()
            ));
        }
        let depth = nesting(source);
        if depth > MAX_CEL_NESTING {
            return Err(format!(
                "CEL expression nested {depth} levels deep, more than the limit of {MAX_CEL_NESTING}"
            ));
        }
        // The parser (ANTLR) takes tens of kilobytes of stack per nesting level in a debug
        // build: parse on a thread of our own with a stack that the limits above cannot exhaust.
        let parsed = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("cel-compile".into())
                .stack_size(PARSE_STACK_BYTES)
                .spawn_scoped(s, || ENV.compile(source).map_err(|e| e.to_string()))
                .map_err(|e| format!("cannot start the CEL parser: {e}"))?
                .join()
                .map_err(|_| "the CEL parser failed".to_string())?
        });
        let program = parsed.map_err(|text| format!("invalid CEL expression: {}", text.trim()))?;
        let mut bound = Vec::new();
        check(&program.expression().expr, &mut bound)?;
        let lowered = lower::lower(program.expression()).map(Arc::new);
        let compiled = lowered.as_deref().map(|l| Arc::new(Compiled::new(l)));
        Ok(CelCondition {
            source: source.to_string(),
            program: Arc::new(program),
            lowered,
            compiled,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression runs lowered (without the interpreter, `lower.rs`).
    pub fn is_lowered(&self) -> bool {
        self.lowered.is_some()
    }
}

/// Checks every free variable and every field selected on `vuln`, `image`, `workload`.
fn check(e: &Expr, bound: &mut Vec<String>) -> Result<(), String> {
    let fields_of = |root: &str| -> Option<&'static [&'static str]> {
        match root {
            "vuln" => Some(VULN_FIELDS),
            "image" => Some(IMAGE_FIELDS),
            "workload" => Some(WORKLOAD_FIELDS),
            _ => None,
        }
    };
    match e {
        Expr::Ident(name) => {
            if !bound.iter().any(|b| b == name) && fields_of(name).is_none() {
                return Err(format!(
                    "unknown variable {name:?} in CEL expression (variables: vuln, image, workload)"
                ));
            }
        }
        Expr::Select(s) => {
            if let Expr::Ident(root) = &s.operand.expr {
                if !bound.iter().any(|b| b == root) {
                    if let Some(fields) = fields_of(root) {
                        if !fields.contains(&s.field.as_str()) {
                            return Err(format!(
                                "{root} has no field {:?} (fields: {})",
                                s.field,
                                fields.join(", ")
                            ));
                        }
                    }
                }
            }
            check(&s.operand.expr, bound)?;
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                check(&t.expr, bound)?;
            }
            for a in &c.args {
                check(&a.expr, bound)?;
            }
        }
        Expr::List(l) => {
            for x in &l.elements {
                check(&x.expr, bound)?;
            }
        }
        Expr::Map(m) => {
            for en in &m.entries {
                entry(&en.expr, bound)?;
            }
        }
        Expr::Struct(s) => {
            for en in &s.entries {
                entry(&en.expr, bound)?;
            }
        }
        Expr::Comprehension(c) => {
            check(&c.iter_range.expr, bound)?;
            check(&c.accu_init.expr, bound)?;
            let n = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v2) = &c.iter_var2 {
                bound.push(v2.clone());
            }
            bound.push(c.accu_var.clone());
            let r = check(&c.loop_cond.expr, bound)
                .and_then(|_| check(&c.loop_step.expr, bound))
                .and_then(|_| check(&c.result.expr, bound));
            bound.truncate(n);
            r?;
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
    Ok(())
}

fn entry(e: &EntryExpr, bound: &mut Vec<String>) -> Result<(), String> {
    match e {
        EntryExpr::StructField(f) => check(&f.value.expr, bound),
        EntryExpr::MapEntry(m) => {
            check(&m.key.expr, bound)?;
            check(&m.value.expr, bound)
        }
    }
}

/// What one walk over a report's vulnerabilities evaluates CEL conditions against. Built once
/// per rule condition; `set` moves it to the next vulnerability.
pub(crate) struct Scope<'a> {
    vulns: &'a [Vulnerability],
    /// What a lowered expression reads besides the vulnerability.
    env: lower::Env<'a>,
    current: AtomicUsize,
    catalogs: &'a Catalogs,
    image: &'a ImageRef,
    ctx: &'a RequestContext,
    now: DateTime<Utc>,
}

impl<'a> Scope<'a> {
    pub(crate) fn new(
        vulns: &'a [Vulnerability],
        catalogs: &'a Catalogs,
        image: &'a ImageRef,
        ctx: &'a RequestContext,
        now: DateTime<Utc>,
    ) -> Scope<'a> {
        Scope {
            vulns,
            env: lower::Env {
                catalogs,
                image,
                ctx,
                now,
            },
            current: AtomicUsize::new(0),
            catalogs,
            image,
            ctx,
            now,
        }
    }

    /// Whether vulnerability `i` counts by the interpreter's answer: the expression is true,
    /// or it fails (a broken condition never lets an image through silently).
    #[cold]
    #[inline(never)]
    fn counts_interpreted(&self, cond: &CelCondition, i: usize) -> bool {
        !matches!(self.interpret(cond, i), Ok(false))
    }

    /// Evaluates `cond` for vulnerability `i`: `Ok(true/false)`, or the error that makes it
    /// count.
    pub(crate) fn eval(&self, cond: &CelCondition, i: usize) -> Result<bool, String> {
        if let (Some(c), Some(v)) = (&cond.compiled, self.vulns.get(i)) {
            if let Some(b) = c.eval(v, &self.env) {
                return Ok(b);
            }
        }
        self.interpret(cond, i)
    }

    /// Evaluates `cond` for vulnerability `i` with the lowered tree (`lower.rs`) only: what
    /// the compiled form must agree with.
    #[cfg(test)]
    pub(crate) fn eval_lowered(&self, cond: &CelCondition, i: usize) -> Option<bool> {
        let (l, v) = (cond.lowered.as_ref()?, self.vulns.get(i)?);
        l.eval(v, &self.env)
    }

    /// Evaluates `cond` for vulnerability `i` with the CEL interpreter.
    pub(crate) fn interpret(&self, cond: &CelCondition, i: usize) -> Result<bool, String> {
        self.current.store(i, Ordering::Relaxed);
        let mut context = Context::with_env(ENV.clone());
        context.set_variable_resolver(self);
        match cond.program.execute(&context) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("the expression gave {other:?}, not a boolean")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// One condition's CEL expression bound to the scope of one walk: what the engine asks per
/// vulnerability.
pub(crate) struct CelFilter<'a> {
    scope: Scope<'a>,
    cond: &'a CelCondition,
    compiled: Option<&'a Compiled>,
}

impl<'a> CelFilter<'a> {
    pub(crate) fn new(scope: Scope<'a>, cond: &'a CelCondition) -> CelFilter<'a> {
        CelFilter {
            scope,
            cond,
            compiled: cond.compiled.as_deref(),
        }
    }

    /// Whether vulnerability `i`, which is `v`, counts: the expression is true, or it fails.
    /// The engine's hot path: the compiled expression, the interpreter only where it cannot
    /// answer.
    #[inline]
    pub(crate) fn counts(&self, i: usize, v: &Vulnerability) -> bool {
        debug_assert!(std::ptr::eq(v, &self.scope.vulns[i]));
        if let Some(c) = self.compiled {
            if let Some(b) = c.eval(v, &self.scope.env) {
                return b;
            }
        }
        self.scope.counts_interpreted(self.cond, i)
    }

    /// As `Scope::eval`.
    pub(crate) fn eval(&self, i: usize) -> Result<bool, String> {
        self.scope.eval(self.cond, i)
    }
}

impl VariableResolver for Scope<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        match variable {
            "vuln" => {
                let i = self.current.load(Ordering::Relaxed);
                self.vulns.get(i).map(|v| {
                    CowVal::owned(VulnVal {
                        v,
                        catalogs: self.catalogs,
                        now: self.now,
                    })
                })
            }
            "image" => Some(CowVal::owned(ImageVal(self.image))),
            "workload" => Some(CowVal::owned(WorkloadVal(self.ctx))),
            _ => None,
        }
    }
}

fn str_val<'v>(s: &'v str) -> Box<dyn Val + 'v> {
    Box::new(CelString::from(s))
}

fn opt_str(s: &Option<String>) -> CelString<'_> {
    CelString::from(fields::opt(s))
}

fn list<'v>(items: impl Iterator<Item = Box<dyn Val + 'v>>) -> CelList<'v> {
    CelList::from(items.collect::<Vec<_>>())
}

fn key_of(idx: &dyn Val) -> Result<&str, ExecutionError> {
    idx.downcast_ref::<CelString>()
        .map(|s| s.inner())
        .ok_or_else(|| ExecutionError::UnexpectedType {
            got: idx.get_type().name().to_string(),
            want: "string".into(),
        })
}

macro_rules! lazy_object {
    ($ty:ident) => {
        impl Val for $ty<'_> {
            fn get_type(&self) -> &Type {
                &DYN_TYPE
            }
            fn cel_type() -> &'static Type {
                &DYN_TYPE
            }
            fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
            where
                Self: 'v,
            {
                Some(self)
            }
            fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
            where
                Self: 'v,
            {
                Box::new(self.clone())
            }
        }
    };
}

#[derive(Debug, Clone)]
struct VulnVal<'a> {
    v: &'a Vulnerability,
    catalogs: &'a Catalogs,
    now: DateTime<Utc>,
}
lazy_object!(VulnVal);

impl Indexer for VulnVal<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let v = self.v;
        let field = key_of(idx)?;
        Ok(match field {
            "id" => CowVal::owned(CelString::from(v.id.as_str())),
            "ids" => CowVal::owned(list(v.ids.iter().map(|s| str_val(s)))),
            "severity" => CowVal::owned(CelString::from(v.severity.as_str())),
            "severityRank" => CowVal::owned(CelInt::from(fields::severity_rank(v))),
            "cvss" => CowVal::owned(CelDouble::from(fields::cvss(v))),
            "fixAvailable" => CowVal::owned(CelBool::from(v.fix_available)),
            "fixedVersion" => CowVal::owned(CelString::from(fields::fixed_version(v))),
            "fixedVersions" => {
                CowVal::owned(list(fields::fixed_versions(v).into_iter().map(str_val)))
            }
            "packages" => CowVal::owned(list(v.packages.iter().map(|p| {
                let mut m: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = HashMap::new();
                m.insert(CelMapKey::from("name"), str_val(&p.name));
                m.insert(
                    CelMapKey::from("version"),
                    str_val(p.installed.as_deref().unwrap_or("")),
                );
                m.insert(
                    CelMapKey::from("fixedVersions"),
                    Box::new(list(p.fixed.iter().map(|s| str_val(s)))),
                );
                Box::new(CelMap::from(m)) as Box<dyn Val + 'v>
            }))),
            "knownExploited" => CowVal::owned(CelBool::from(self.catalogs.is_known_exploited(v))),
            "epss" => CowVal::owned(CelDouble::from(fields::epss(self.catalogs, v))),
            "epssPercentile" => {
                CowVal::owned(CelDouble::from(fields::epss_percentile(self.catalogs, v)))
            }
            "published" => CowVal::owned(CelString::from(
                v.published
                    .map(|p| p.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
            )),
            "ageDays" => CowVal::owned(CelInt::from(fields::age_days(self.now, v))),
            other => return Err(ExecutionError::no_such_key(other)),
        })
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

#[derive(Debug, Clone)]
struct ImageVal<'a>(&'a ImageRef);
lazy_object!(ImageVal);

impl Indexer for ImageVal<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let i = self.0;
        Ok(CowVal::owned(match key_of(idx)? {
            "reference" => CelString::from(i.original.as_str()),
            "registry" => CelString::from(i.registry.as_str()),
            "repository" => CelString::from(i.repository.as_str()),
            "tag" => opt_str(&i.tag),
            "digest" => opt_str(&i.digest),
            other => return Err(ExecutionError::no_such_key(other)),
        }))
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

#[derive(Debug, Clone)]
struct WorkloadVal<'a>(&'a RequestContext);
lazy_object!(WorkloadVal);

impl Indexer for WorkloadVal<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let c = self.0;
        Ok(match key_of(idx)? {
            "cluster" => CowVal::owned(opt_str(&c.cluster)),
            "namespace" => CowVal::owned(opt_str(&c.namespace)),
            "name" => CowVal::owned(opt_str(&c.workload_name)),
            "kind" => CowVal::owned(opt_str(&c.workload_kind)),
            "pod" => CowVal::owned(opt_str(&c.pod)),
            "user" => CowVal::owned(opt_str(&c.user)),
            "serviceAccount" => {
                CowVal::owned(CelString::from(c.service_account().unwrap_or_default()))
            }
            "groups" => CowVal::owned(list(c.groups.iter().map(|g| str_val(g)))),
            "labels" => {
                let m: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = c
                    .labels
                    .iter()
                    .map(|(k, v)| (CelMapKey::from(k.as_str()), str_val(v)))
                    .collect();
                CowVal::owned(CelMap::from(m))
            }
            other => return Err(ExecutionError::no_such_key(other)),
        })
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}
