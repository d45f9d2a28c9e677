//! Conditions: which vulnerabilities count for a rule's condition, and where in the walk the
//! rule fires.

use chrono::{DateTime, Utc};

use super::analyze::{AnalyzedReport, Vulnerability};
use super::scope::op_matches;
use crate::model::Severity;
use crate::rules::{is_live, Condition, ExemptionField, Op, Rule};

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

fn passes_filters(rule: &Rule, ci: usize, c: &Condition, v: &Vulnerability) -> bool {
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
    true
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
pub(super) fn fire_point(
    rule: &Rule,
    r: &AnalyzedReport,
    now: DateTime<Utc>,
) -> Option<(usize, usize, Counted)> {
    let ignored = ignored_by(rule, r, now);
    let counts = |i: usize| ignored.binary_search(&i).is_err();
    let mut best: Option<(usize, usize, Counted)> = None;
    for (ci, c) in rule.spec.conditions.iter().enumerate() {
        // Only an earlier vulnerability can beat the best so far (a later condition at the
        // same vulnerability comes after it).
        let limit = best.as_ref().map(|b| b.0).unwrap_or(usize::MAX);
        let hit = if c.is_cve_list() {
            c.cve_ids
                .iter()
                .filter_map(|id| r.find(id))
                .filter(|i| {
                    *i < limit && counts(*i) && passes_filters(rule, ci, c, &r.vulnerabilities[*i])
                })
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
        } else if c.cvss_at_least.is_none() && c.packages.is_empty() {
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
                if counts(i) && passes_filters(rule, ci, c, v) {
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
    c: &Condition,
    v: &Vulnerability,
    counted: &Counted,
    r: &AnalyzedReport,
) -> String {
    if c.is_cve_list() {
        return format!("{} is blocked", v.id);
    }
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
    let mut filters = Vec::new();
    match c.fix_available {
        Some(true) => filters.push("with a fix".to_string()),
        Some(false) => filters.push("without a fix".to_string()),
        None => {}
    }
    if let Some(x) = c.cvss_at_least {
        filters.push(format!("with CVSS >= {x}"));
    }
    if !c.packages.is_empty() {
        filters.push(format!("in packages matching {}", c.packages.join(", ")));
    }
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
