//! Conditions: which vulnerabilities count for a rule's condition, and where in the walk the
//! rule fires.

use chrono::{DateTime, Utc};

use super::analyze::AnalyzedReport;
use super::scope::op_matches;
use super::RequestContext;
use crate::cel::{CelFilter, Scope};
use crate::exploit::Catalogs;
use crate::image::ImageRef;
use crate::model::Severity;
use crate::rules::{is_live, Condition, ExemptionField, Op, Rule};

/// Everything a condition is evaluated against, besides the rule.
#[derive(Debug, Clone, Copy)]
pub(super) struct Inputs<'a> {
    pub r: &'a AnalyzedReport,
    pub catalogs: &'a Catalogs,
    pub image: &'a ImageRef,
    pub ctx: &'a RequestContext,
    pub now: DateTime<Utc>,
}

impl<'a> Inputs<'a> {
    /// Condition `ci`'s CEL expression bound to a scope for one walk, when it has one.
    fn cel_filter<'b>(&self, rule: &'b Rule, ci: usize) -> Option<CelFilter<'b>>
    where
        'a: 'b,
    {
        let cond = rule.cel.get(ci)?.as_ref()?;
        let scope = Scope::new(
            &self.r.vulnerabilities,
            self.catalogs,
            self.image,
            self.ctx,
            self.now,
        );
        Some(CelFilter::new(scope, cond))
    }
}

/// Vulnerabilities this rule ignores (live allowances and live `cve` exemptions), as sorted
/// indices into the report's vulnerabilities (a short list: a rule allows a few ids).
fn ignored_by(rule: &Rule, r: &AnalyzedReport, now: DateTime<Utc>) -> Vec<usize> {
    let mut ignored = Vec::new();
    for a in &rule.spec.allowed_vulnerabilities {
        if is_live(a.valid_until, now) {
            ignored.extend(r.find(&a.id));
        }
    }
    for e in &rule.spec.exemptions {
        if e.field != ExemptionField::Cve || !is_live(e.valid_until, now) {
            continue;
        }
        if e.op == Op::Equals {
            ignored.extend(r.find(&e.value));
        } else {
            for (i, v) in r.vulnerabilities.iter().enumerate() {
                if op_matches(e.op, Some(&v.ids), &e.value) {
                    ignored.push(i);
                }
            }
        }
    }
    ignored.sort_unstable();
    ignored.dedup();
    ignored
}

/// Whether vulnerability `vi` passes condition `ci`'s filters. `cel` is the condition's CEL
/// expression bound to the walk (built once per walk) when it has one.
fn passes_filters(
    rule: &Rule,
    ci: usize,
    c: &Condition,
    vi: usize,
    inp: &Inputs<'_>,
    cel: Option<&CelFilter<'_>>,
) -> bool {
    let v = &inp.r.vulnerabilities[vi];
    if let Some(want) = c.fix_available {
        if v.fix_available != want {
            return false;
        }
    }
    if let Some(min) = c.cvss_at_least {
        if v.cvss.is_none_or(|s| s < min) {
            return false;
        }
    }
    if !c.packages.is_empty() {
        let globs = &rule.package_globs[ci];
        if !v
            .packages
            .iter()
            .any(|p| globs.iter().any(|g| g.matches(&p.name)))
        {
            return false;
        }
    }
    if let Some(age) = c.published_before {
        // Unknown date: counts (the conservative side).
        if v.published
            .is_some_and(|p| inp.now.signed_duration_since(p) < age.0)
        {
            return false;
        }
    }
    if let Some(want) = c.known_exploited {
        if inp.catalogs.kev_of(v).is_some() != want {
            return false;
        }
    }
    if c.epss_at_least.is_some() || c.epss_percentile_at_least.is_some() {
        let Some((_, s)) = inp.catalogs.epss_of(v) else {
            return false;
        };
        if c.epss_at_least.is_some_and(|min| s.score < min)
            || c.epss_percentile_at_least
                .is_some_and(|min| s.percentile < min)
        {
            return false;
        }
    }
    if let Some(cel) = cel {
        // An expression that fails counts the vulnerability (never a silent allow).
        if !cel.counts(vi, v) {
            return false;
        }
    }
    true
}

/// The error condition `ci`'s CEL expression gives for vulnerability `vi`, if it fails.
fn cel_error(rule: &Rule, ci: usize, vi: usize, inp: &Inputs<'_>) -> Option<String> {
    inp.cel_filter(rule, ci)?.eval(vi).err()
}

/// How many vulnerabilities a count condition counted when it was fulfilled, and the first
/// few of them (for the reason).
#[derive(Debug)]
pub(super) struct Counted {
    n: usize,
    first: Vec<usize>,
}

const SHOWN: usize = 5;

/// The first point of the walk at which `rule` fires: (vulnerability index, condition index,
/// what was counted up to it).
pub(super) fn fire_point(rule: &Rule, inp: &Inputs<'_>) -> Option<(usize, usize, Counted)> {
    let r = inp.r;
    let ignored = ignored_by(rule, r, inp.now);
    let counts = |i: usize| ignored.binary_search(&i).is_err();
    let mut best: Option<(usize, usize, Counted)> = None;
    for (ci, c) in rule.spec.conditions.iter().enumerate() {
        // Only an earlier vulnerability can beat the best so far (a later condition at the
        // same vulnerability comes after it).
        let limit = best.as_ref().map(|b| b.0).unwrap_or(usize::MAX);
        let cel = inp.cel_filter(rule, ci);
        let cel = cel.as_ref();
        let hit = if c.is_cve_list() {
            c.cve_ids
                .iter()
                .filter_map(|id| r.find(id))
                .filter(|i| *i < limit && counts(*i) && passes_filters(rule, ci, c, *i, inp, cel))
                .min()
                .map(|i| {
                    (
                        i,
                        Counted {
                            n: 1,
                            first: vec![i],
                        },
                    )
                })
        } else if c.only_fix_filter() {
            count_by_position(c, r, &ignored, limit)
        } else {
            let min_rank = c.severity.unwrap_or(Severity::Unknown).rank();
            let max = c.max_count.unwrap_or(0) as usize;
            let mut counted = Counted {
                n: 0,
                first: Vec::new(),
            };
            let mut found = None;
            for (i, v) in r.vulnerabilities.iter().enumerate() {
                if i >= limit || v.severity.rank() < min_rank {
                    break; // sorted most severe first: nothing later can count
                }
                if counts(i) && passes_filters(rule, ci, c, i, inp, cel) {
                    counted.n += 1;
                    if counted.first.len() < SHOWN {
                        counted.first.push(i);
                    }
                    if counted.n > max {
                        found = Some(i);
                        break;
                    }
                }
            }
            found.map(|i| (i, counted))
        };
        if let Some((i, counted)) = hit {
            best = Some((i, ci, counted));
        }
    }
    best
}

/// Every vulnerability of the report that counts for condition `ci` of `rule` (passes its
/// filters, is not allowed or exempted by the rule), in walk order, at most `cap` of them;
/// the second value is how many count in all. For explaining a decision (the alert's
/// violations), never for deciding.
pub(super) fn counted_all(
    rule: &Rule,
    ci: usize,
    inp: &Inputs<'_>,
    cap: usize,
) -> (Vec<usize>, usize) {
    let r = inp.r;
    let Some(c) = rule.spec.conditions.get(ci) else {
        return (Vec::new(), 0);
    };
    let ignored = ignored_by(rule, r, inp.now);
    let cel = inp.cel_filter(rule, ci);
    let cel = cel.as_ref();
    let ok =
        |i: usize| ignored.binary_search(&i).is_err() && passes_filters(rule, ci, c, i, inp, cel);
    let mut out = Vec::new();
    let mut total = 0;
    let mut push = |i: usize, out: &mut Vec<usize>| {
        total += 1;
        if out.len() < cap {
            out.push(i);
        }
    };
    if c.is_cve_list() {
        let mut hits: Vec<usize> = c.cve_ids.iter().filter_map(|id| r.find(id)).collect();
        hits.sort_unstable();
        hits.dedup();
        for i in hits.into_iter().filter(|i| ok(*i)) {
            push(i, &mut out);
        }
    } else {
        let min_rank = c.severity.unwrap_or(Severity::Unknown).rank();
        for (i, v) in r.vulnerabilities.iter().enumerate() {
            if v.severity.rank() < min_rank {
                break; // sorted most severe first
            }
            if ok(i) {
                push(i, &mut out);
            }
        }
    }
    (out, total)
}

/// A count condition whose only filter is `fixAvailable`, computed from positions instead of a
/// walk: the candidates (all vulnerabilities, or the fixable / unfixable ones) are in walk
/// order, so the vulnerability that makes the count exceed `maxCount` is the candidate of rank
/// `maxCount + 1`, skipping the few the rule ignores. Same result as the walk, without it.
fn count_by_position(
    c: &Condition,
    r: &AnalyzedReport,
    ignored: &[usize],
    limit: usize,
) -> Option<(usize, Counted)> {
    let list: Option<&[usize]> = match c.fix_available {
        None => None,
        Some(true) => Some(&r.fixable),
        Some(false) => Some(&r.unfixable),
    };
    let cand = |j: usize| -> Option<usize> {
        match list {
            None => (j < r.vulnerabilities.len()).then_some(j),
            Some(l) => l.get(j).copied(),
        }
    };
    let is_cand = |i: usize| match c.fix_available {
        None => true,
        Some(want) => r.vulnerabilities[i].fix_available == want,
    };
    let end = r.rank_end[usize::from(c.severity.unwrap_or(Severity::Unknown).rank())].min(limit);
    let need = c.max_count.unwrap_or(0) as usize + 1;
    let mut skip = ignored.iter().copied().filter(|i| is_cand(*i)).peekable();
    let mut skipped = 0;
    let idx = loop {
        let idx = cand(need - 1 + skipped)?;
        let before = skipped;
        while skip.next_if(|g| *g <= idx).is_some() {
            skipped += 1;
        }
        if skipped == before {
            break idx;
        }
    };
    if idx >= end {
        return None;
    }
    let mut first = Vec::with_capacity(SHOWN.min(need));
    let mut j = 0;
    while first.len() < SHOWN.min(need) {
        let Some(i) = cand(j) else { break };
        if ignored.binary_search(&i).is_err() {
            first.push(i);
        }
        j += 1;
    }
    Some((idx, Counted { n: need, first }))
}

pub(super) fn count_reason(
    rule: &Rule,
    ci: usize,
    vi: usize,
    counted: &Counted,
    inp: &Inputs<'_>,
) -> String {
    let c = &rule.spec.conditions[ci];
    let r = inp.r;
    let v = &r.vulnerabilities[vi];
    let mut text = if c.is_cve_list() {
        format!("{} is blocked", v.id)
    } else {
        count_text(c, counted, r)
    };
    if let Some(e) = cel_error(rule, ci, vi, inp) {
        text.push_str(&format!(
            "; the CEL expression failed for {} and counts it: {e}",
            v.id
        ));
    }
    if let Some(x) = inp.catalogs.describe(v) {
        text.push_str("; ");
        text.push_str(&x);
    }
    text
}

fn count_text(c: &Condition, counted: &Counted, r: &AnalyzedReport) -> String {
    let mut ids: Vec<&str> = counted
        .first
        .iter()
        .map(|i| r.vulnerabilities[*i].id.as_str())
        .collect();
    let more = counted.n.saturating_sub(counted.first.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    ids.dedup();
    let sev = c.severity.unwrap_or(Severity::Unknown);
    let n = counted.n;
    let noun = if n == 1 {
        "vulnerability"
    } else {
        "vulnerabilities"
    };
    let what = if sev.rank() == 0 {
        noun.to_string()
    } else {
        format!("{sev} or higher {noun}")
    };
    let filters = c.filter_phrases(true);
    let filters = if filters.is_empty() {
        String::new()
    } else {
        format!(" {}", filters.join(" "))
    };
    format!(
        "{n} {what}{filters} ({}{more}), more than the allowed count of {}",
        ids.join(", "),
        c.max_count.unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Finding, Package, ReportFormat, Scanner};
    use crate::model::{FindingsReport, ReportIdentity};

    /// The position shortcut must give exactly what the walk gives, for any report, threshold,
    /// fix filter and set of ignored vulnerabilities.
    #[test]
    fn count_by_position_equals_the_walk() {
        let mut seed: u64 = 1;
        let mut rnd = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let sev = [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
            Severity::Unknown,
        ];
        for _ in 0..400 {
            let n = rnd(40) as usize;
            let findings = (0..n)
                .map(|i| Finding {
                    id: format!("CVE-{}", rnd(30)),
                    severity: sev[rnd(5) as usize],
                    package: Package {
                        name: format!("p{i}"),
                        ..Package::default()
                    },
                    fixed_versions: if rnd(2) == 0 {
                        vec!["1".into()]
                    } else {
                        vec![]
                    },
                    ..Finding::default()
                })
                .collect();
            let report = FindingsReport {
                format: ReportFormat::Trivy,
                subject_digest: None,
                artifact_name: None,
                scanner: Scanner::default(),
                created: None,
                findings,
                vex: Vec::new(),
            };
            let a = AnalyzedReport::new(&report, ReportIdentity::default(), &[], None);
            let len = a.vulnerabilities.len();
            let mut ignored: Vec<usize> = (0..rnd(4))
                .map(|_| rnd(len.max(1) as u64) as usize)
                .filter(|i| *i < len)
                .collect();
            ignored.sort_unstable();
            ignored.dedup();
            let c = Condition {
                severity: Some(sev[rnd(5) as usize]),
                max_count: Some(rnd(8) as u32),
                fix_available: [None, Some(true), Some(false)][rnd(3) as usize],
                ..Condition::default()
            };
            let limit = if rnd(3) == 0 {
                rnd(len as u64 + 1) as usize
            } else {
                usize::MAX
            };
            // Reference: the plain walk.
            let min_rank = c.severity.map(|s| s.rank()).unwrap_or(0);
            let mut seen = Vec::new();
            let mut want = None;
            for (i, v) in a.vulnerabilities.iter().enumerate() {
                if i >= limit || v.severity.rank() < min_rank {
                    break;
                }
                let fix_ok = c.fix_available.is_none_or(|f| f == v.fix_available);
                if fix_ok && ignored.binary_search(&i).is_err() {
                    seen.push(i);
                    if seen.len() > c.max_count.unwrap_or(0) as usize {
                        want = Some(i);
                        break;
                    }
                }
            }
            let got = count_by_position(&c, &a, &ignored, limit);
            assert_eq!(
                got.as_ref().map(|g| g.0),
                want,
                "{c:?} ignored {ignored:?} limit {limit}"
            );
            if let Some((_, counted)) = got {
                assert_eq!(counted.n, seen.len());
                assert_eq!(
                    counted.first,
                    seen.iter().copied().take(SHOWN).collect::<Vec<_>>()
                );
            }
        }
    }
}
