//! A report prepared for evaluation: VEX applied, findings grouped into vulnerabilities
//! (aliases merged) and sorted in walk order.

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::image::ImageRef;
use crate::model::{FindingsReport, ReportIdentity, Severity, VexStatement};

/// A vulnerability: findings merged by id and alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vulnerability {
    /// The CVE id when it has one, else its smallest id.
    pub id: String,
    /// Every id and alias, sorted.
    pub ids: Vec<String>,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss: Option<f32>,
    /// Every finding of it names a fixed version.
    pub fix_available: bool,
    pub packages: Vec<AffectedPackage>,
    /// The earliest publication date any of its findings gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<DateTime<Utc>>,
    /// Set on a decision's copy when the KEV catalog lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_exploited: Option<crate::exploit::KevEntry>,
    /// Set on a decision's copy when the EPSS scores have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epss: Option<crate::exploit::EpssScore>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedPackage {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed: Vec<String>,
}

/// Vulnerability counts by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityCounts {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
    pub negligible: u32,
    pub unknown: u32,
}

impl SeverityCounts {
    fn add(&mut self, s: Severity) {
        let slot = match s {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::Negligible => &mut self.negligible,
            Severity::Unknown => &mut self.unknown,
        };
        *slot += 1;
    }

    pub fn get(&self, s: Severity) -> u32 {
        match s {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Negligible => self.negligible,
            Severity::Unknown => self.unknown,
        }
    }

    pub fn total(&self) -> u32 {
        Severity::ALL_DESC.iter().map(|s| self.get(*s)).sum()
    }
}

/// A report prepared for evaluation: VEX applied, findings grouped into vulnerabilities and
/// sorted most severe first. Independent of the rules, so it can be built once per report and
/// reused for every evaluation (the webhook caches it by artifact digest).
#[derive(Debug, Clone)]
pub struct AnalyzedReport {
    pub identity: ReportIdentity,
    pub created: Option<DateTime<Utc>>,
    pub vulnerabilities: Vec<Vulnerability>,
    pub counts: SeverityCounts,
    /// Ids of findings removed by VEX statements.
    pub suppressed: Vec<String>,
    /// Every id and alias -> index into `vulnerabilities`; empty (no allocation) when the
    /// report has at most [`INDEXED_IDS`] ids, which [`find`](Self::find) then scans.
    pub(super) index: FxHashMap<String, u32>,
    /// Indices of the vulnerabilities with / without a fix, in walk order.
    pub(super) fixable: Vec<usize>,
    pub(super) unfixable: Vec<usize>,
    /// `rank_end[r]`: how many vulnerabilities have a severity rank of at least `r`.
    pub(super) rank_end: [usize; 5],
}

/// Most ids (and aliases) a report may have without an id index. Below it a cached report
/// keeps no hash map (about 180 bytes and one copy of each id for the one-vulnerability report
/// of scripts/bench-webhook.sh's 10,000 cached digests) and a look-up scans at most this many
/// ids, as cheap as hashing one.
pub(super) const INDEXED_IDS: usize = 16;

struct UnionFind(Vec<u32>);

impl UnionFind {
    fn find(&mut self, mut x: u32) -> u32 {
        while self.0[x as usize] != x {
            let p = self.0[x as usize];
            self.0[x as usize] = self.0[p as usize];
            x = p;
        }
        x
    }
    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[hi as usize] = lo;
        }
    }
}

fn is_cve(id: &str) -> bool {
    id.len() > 4 && id[..4].eq_ignore_ascii_case("CVE-")
}

impl AnalyzedReport {
    /// Applies `vex` (plus the report's own VEX statements) and groups the findings.
    /// `image` lets image-scoped VEX statements apply; without it they do not.
    pub fn new(
        report: &FindingsReport,
        identity: ReportIdentity,
        vex: &[VexStatement],
        image: Option<&ImageRef>,
    ) -> AnalyzedReport {
        let statements: Vec<&VexStatement> = report
            .vex
            .iter()
            .chain(vex.iter())
            .filter(|s| s.status.suppresses())
            .collect();
        let mut suppressed = Vec::new();
        let kept: Vec<&crate::model::Finding> = report
            .findings
            .iter()
            .filter(|f| {
                let hit = statements
                    .iter()
                    .any(|s| crate::vex::suppresses(s, f, image));
                if hit {
                    suppressed.push(f.id.clone());
                }
                !hit
            })
            .collect();
        suppressed.sort();
        suppressed.dedup();

        // Union-find over ids: each finding joins its id with its aliases.
        let mut id_of: FxHashMap<&str, u32> = FxHashMap::default();
        id_of.reserve(kept.len() * 2);
        let mut names: Vec<&str> = Vec::with_capacity(kept.len() * 2);
        let mut uf = UnionFind(Vec::with_capacity(kept.len() * 2));
        let mut finding_root: Vec<u32> = Vec::with_capacity(kept.len());
        for f in &kept {
            let mut first: Option<u32> = None;
            for id in std::iter::once(f.id.as_str()).chain(f.aliases.iter().map(String::as_str)) {
                let n = match id_of.get(id) {
                    Some(n) => *n,
                    None => {
                        let n = names.len() as u32;
                        names.push(id);
                        uf.0.push(n);
                        id_of.insert(id, n);
                        n
                    }
                };
                match first {
                    None => first = Some(n),
                    Some(a) => uf.union(a, n),
                }
            }
            finding_root.push(first.unwrap_or(0));
        }
        // Number the groups (one per union-find root) and lay findings and ids out group by
        // group (a counting sort: no per-group allocation).
        let mut gid_of_root = vec![u32::MAX; names.len()];
        let mut ngroups = 0usize;
        let mut gid_of = |root: u32, uf: &mut UnionFind| -> usize {
            let root = uf.find(root) as usize;
            if gid_of_root[root] == u32::MAX {
                gid_of_root[root] = ngroups as u32;
                ngroups += 1;
            }
            gid_of_root[root] as usize
        };
        let finding_gid: Vec<usize> = finding_root.iter().map(|r| gid_of(*r, &mut uf)).collect();
        let name_gid: Vec<usize> = (0..names.len() as u32)
            .map(|n| gid_of(n, &mut uf))
            .collect();
        let by_group = |gids: &[usize]| -> (Vec<usize>, Vec<usize>) {
            let mut start = vec![0usize; ngroups + 1];
            for g in gids {
                start[g + 1] += 1;
            }
            for g in 0..ngroups {
                start[g + 1] += start[g];
            }
            let mut next = start.clone();
            let mut order = vec![0usize; gids.len()];
            for (i, g) in gids.iter().enumerate() {
                order[next[*g]] = i;
                next[*g] += 1;
            }
            (start, order)
        };
        let (fstart, forder) = by_group(&finding_gid);
        let (nstart, norder) = by_group(&name_gid);
        let mut vulnerabilities: Vec<Vulnerability> = Vec::with_capacity(ngroups);
        for g in 0..ngroups {
            let members = &forder[fstart[g]..fstart[g + 1]];
            let mut ids: Vec<String> = norder[nstart[g]..nstart[g + 1]]
                .iter()
                .map(|n| names[*n].to_string())
                .collect();
            ids.sort();
            let id = ids
                .iter()
                .find(|i| is_cve(i))
                .or_else(|| ids.first())
                .cloned()
                .unwrap_or_default();
            let mut severity = Severity::Unknown;
            let mut cvss: Option<f32> = None;
            let mut fix_available = true;
            let mut published: Option<DateTime<Utc>> = None;
            let mut packages: Vec<AffectedPackage> = Vec::new();
            for fi in members {
                let f = kept[*fi];
                if f.severity.rank() > severity.rank()
                    || (f.severity.rank() == severity.rank() && f.severity == Severity::Negligible)
                {
                    severity = f.severity;
                }
                if let Some(c) = f.cvss {
                    if c.is_finite() && cvss.is_none_or(|m| c > m) {
                        cvss = Some(c);
                    }
                }
                fix_available &= f.has_fix();
                if let Some(p) = f.published {
                    if published.is_none_or(|q| p < q) {
                        published = Some(p);
                    }
                }
                let known = packages.iter().any(|p| {
                    p.name == f.package.name
                        && p.installed == f.package.version
                        && p.fixed == f.fixed_versions
                });
                if !known {
                    packages.push(AffectedPackage {
                        name: f.package.name.clone(),
                        installed: f.package.version.clone(),
                        fixed: f.fixed_versions.clone(),
                    });
                }
            }
            packages.sort_by(|a, b| {
                (&a.name, &a.installed, &a.fixed).cmp(&(&b.name, &b.installed, &b.fixed))
            });
            vulnerabilities.push(Vulnerability {
                id,
                ids,
                severity,
                cvss,
                fix_available,
                packages,
                published,
                known_exploited: None,
                epss: None,
            });
        }
        vulnerabilities.sort_by(|a, b| {
            b.severity
                .rank()
                .cmp(&a.severity.rank())
                .then_with(|| {
                    let (x, y) = (a.cvss.unwrap_or(-1.0), b.cvss.unwrap_or(-1.0));
                    y.total_cmp(&x)
                })
                .then_with(|| a.id.cmp(&b.id))
        });
        let mut counts = SeverityCounts::default();
        let mut index = FxHashMap::default();
        let indexed = names.len() > INDEXED_IDS;
        if indexed {
            index.reserve(names.len());
        }
        for (i, v) in vulnerabilities.iter().enumerate() {
            counts.add(v.severity);
            if indexed {
                for id in &v.ids {
                    index.insert(id.clone(), i as u32);
                }
            }
        }
        let (fixable, unfixable): (Vec<usize>, Vec<usize>) =
            (0..vulnerabilities.len()).partition(|i| vulnerabilities[*i].fix_available);
        let mut rank_end = [0usize; 5];
        for (r, end) in rank_end.iter_mut().enumerate() {
            *end = vulnerabilities.partition_point(|v| usize::from(v.severity.rank()) >= r);
        }
        AnalyzedReport {
            identity,
            created: report.created,
            vulnerabilities,
            counts,
            suppressed,
            index,
            fixable,
            unfixable,
            rank_end,
        }
    }

    /// The vulnerability with this id or alias.
    pub fn find(&self, id: &str) -> Option<usize> {
        if self.index.is_empty() {
            // Small report (or none): each vulnerability's ids are sorted.
            return self
                .vulnerabilities
                .iter()
                .position(|v| v.ids.binary_search_by(|x| x.as_str().cmp(id)).is_ok());
        }
        self.index.get(id).map(|i| *i as usize)
    }
}
