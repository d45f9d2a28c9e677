//! The SQL of the alert list and the counts by review state, shared by the SQLite and the
//! PostgreSQL store: the filters of [`AlertFilter`], the `(time, id)` cursor, the order and
//! the limit, with numbered placeholders in the store's dialect and the values to bind.
//!
//! Two plans, chosen for 1,000,000 stored alerts (`examples/alerts_scale.rs`, figures in
//! docs/benchmarks.md):
//! - The filters, newest first, through whichever index the filters lead with. SQLite keeps no
//!   statistics, so the low-cardinality columns (action, origin, review state) are kept out of
//!   index selection when a selective filter is given ([`Dialect::low_cardinality`]).
//! - An image filter is a substring, which no index serves: the store first reads the distinct
//!   image references that contain it (`alert_images`, one row per reference ever stored, at
//!   most [`MAX_IMAGE_BRANCHES`] + 1), then the newest page of each one through the
//!   `(image, time)` index, merged: at most `limit` rows read per image instead of a walk of the
//!   whole time index until `limit` rows match. More references than that: the substring test
//!   on every row, as before.

use super::{rfc3339, AlertFilter, ReviewState};

/// Most distinct image references an image filter may match for the per-image plan.
pub(crate) const MAX_IMAGE_BRANCHES: usize = 64;

/// A query parameter of the alert list (both stores bind the same values).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SqlArg {
    Text(String),
    Int(i64),
}

/// The SQL dialect of a store's list and count queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The substring-position function.
    fn substr(self) -> &'static str {
        match self {
            Dialect::Sqlite => "instr",
            Dialect::Postgres => "strpos",
        }
    }

    /// `sql` with its `?` placeholders numbered: `?1, ?2...` (SQLite), `$1, $2...`
    /// (PostgreSQL). The queries here hold no `?` but their placeholders.
    pub(crate) fn number(self, sql: &str) -> String {
        let prefix = match self {
            Dialect::Sqlite => '?',
            Dialect::Postgres => '$',
        };
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for ch in sql.chars() {
            if ch == '?' {
                n += 1;
                out.push(prefix);
                out.push_str(&n.to_string());
            } else {
                out.push(ch);
            }
        }
        out
    }

    /// A column compared with `= ?`, written so that SQLite does not walk its index:
    /// `+column` is SQLite's documented way to keep a term out of index selection. Used for
    /// the low-cardinality columns (action, origin, review state: 2-3 values) when a selective
    /// filter is given, and for every column but the image in the per-image plan. SQLite keeps
    /// no statistics here (nothing runs ANALYZE; a full one takes about a second per million
    /// alerts and holds the write lock), so it weighs every indexed equality alike: it walked
    /// `alerts_action` for namespace + rule + action + since, 104 ms p50 over 1,000,000 alerts
    /// against 16 ms through `alerts_namespace`. PostgreSQL has statistics.
    fn equal(self, column: &str, keep_out_of_index: bool) -> String {
        if keep_out_of_index && self == Dialect::Sqlite {
            format!(" AND +{column} = ?")
        } else {
            format!(" AND {column} = ?")
        }
    }
}

/// Whether `f` has a filter selective enough to lead the query (an indexed column with many
/// values): then the low-cardinality ones only filter.
fn has_selective_filter(f: &AlertFilter) -> bool {
    f.namespace.is_some() || f.rule.is_some() || f.workload.is_some() || f.cve.is_some()
}

/// The distinct image references that contain `needle`, at most [`MAX_IMAGE_BRANCHES`] + 1
/// (one more tells "too many for the per-image plan").
pub(crate) fn image_candidates(needle: &str, dialect: Dialect) -> (String, Vec<SqlArg>) {
    (
        dialect.number(&format!(
            "SELECT image FROM alert_images WHERE {}(image, ?) > 0 LIMIT {}",
            dialect.substr(),
            MAX_IMAGE_BRANCHES + 1
        )),
        vec![SqlArg::Text(needle.to_string())],
    )
}

/// The image references the per-image plan may use: `candidates` when there are at most
/// [`MAX_IMAGE_BRANCHES`], else None (the substring test on every row).
pub(crate) fn per_image(candidates: Vec<String>) -> Option<Vec<String>> {
    (candidates.len() <= MAX_IMAGE_BRANCHES).then_some(candidates)
}

/// The list's columns: the alert, its review state and its `alert_counts` row (NULLs when it
/// absorbed no repeat since migration 7; `decode_seen`).
const SELECT: &str = "SELECT id, data, state, c.count, c.last_seen, c.kinds FROM alerts \
                      LEFT JOIN alert_counts c ON c.alert_id = alerts.id";

/// The list query of `f` (`SELECT id, data, state, counts FROM alerts ...`, newest first, at most
/// `f.limit`), numbered, and its values. `images`: the references an image filter matched
/// ([`image_candidates`], [`per_image`]); None for the substring test on every row.
pub(crate) fn list_query(
    f: &AlertFilter,
    dialect: Dialect,
    images: Option<&[String]>,
) -> (String, Vec<SqlArg>) {
    let limit = SqlArg::Int(f.limit.unwrap_or(100).min(i64::MAX as usize) as i64);
    const ORDER: &str = " ORDER BY time DESC, id DESC";
    let (sql, args) = match images.filter(|_| f.image.is_some()) {
        None => {
            let (mut sql, mut args) = filters(f, dialect, Lead::Auto);
            sql.insert_str(0, &format!("{SELECT} WHERE TRUE"));
            sql.push_str(ORDER);
            sql.push_str(" LIMIT ?");
            args.push(limit);
            (sql, args)
        }
        Some([]) => (format!("{SELECT} WHERE 1 = 0"), Vec::new()),
        Some(images) => {
            let (w, wargs) = filters(f, dialect, Lead::Image);
            let mut args = Vec::new();
            let branches: Vec<String> = images
                .iter()
                .enumerate()
                .map(|(k, image)| {
                    args.push(SqlArg::Text(image.clone()));
                    args.extend(wargs.iter().cloned());
                    args.push(limit.clone());
                    format!(
                        "SELECT * FROM (SELECT id, time FROM alerts WHERE image = ?{w}{ORDER} \
                         LIMIT ?) AS b{k}"
                    )
                })
                .collect();
            args.push(limit);
            (
                format!(
                    "{SELECT} WHERE id IN (SELECT id FROM ({}) AS u{ORDER} LIMIT ?){ORDER}",
                    branches.join(" UNION ALL ")
                ),
                args,
            )
        }
    };
    (dialect.number(&sql), args)
}

/// The count by review state of the alerts `f` selects (its state, cursor and limit
/// ignored): `SELECT state, COUNT(*) ... GROUP BY state`, numbered. `images` as in
/// [`list_query`].
pub(crate) fn count_query(
    f: &AlertFilter,
    dialect: Dialect,
    images: Option<&[String]>,
) -> (String, Vec<SqlArg>) {
    let counted = AlertFilter {
        state: None,
        after: None,
        ..f.clone()
    };
    let (sql, args) = match images.filter(|_| f.image.is_some()) {
        None => filters(&counted, dialect, Lead::Auto),
        Some(images) => {
            // The references stand for the substring: the rows are not tested again.
            let (w, wargs) = filters(&counted, dialect, Lead::Image);
            let mut args: Vec<SqlArg> = images.iter().cloned().map(SqlArg::Text).collect();
            args.extend(wargs);
            let marks = vec!["?"; images.len()].join(", ");
            let list = if images.is_empty() {
                " AND 1 = 0".to_string()
            } else {
                format!(" AND image IN ({marks})")
            };
            (format!("{list}{w}"), args)
        }
    };
    (
        dialect.number(&format!(
            "SELECT state, COUNT(*) FROM alerts WHERE TRUE{sql} GROUP BY state"
        )),
        args,
    )
}

/// The distinct namespaces of the stored alerts, in name order, at most `max`: a loose index
/// scan of `alerts_namespace` (one index probe per namespace, not a walk of every alert),
/// numbered. The same SQL serves both stores.
pub(crate) fn namespaces_query(max: usize, dialect: Dialect) -> (String, Vec<SqlArg>) {
    (
        dialect.number(
            "WITH RECURSIVE ns(n) AS (SELECT MIN(namespace) FROM alerts UNION ALL \
             SELECT (SELECT MIN(namespace) FROM alerts WHERE namespace > ns.n) FROM ns \
             WHERE ns.n IS NOT NULL) SELECT n FROM ns WHERE n IS NOT NULL LIMIT ?",
        ),
        vec![SqlArg::Int(max.min(i64::MAX as usize) as i64)],
    )
}

/// The parsed counts of [`count_query`], every state present (0 when none).
pub(crate) fn state_counts(rows: Vec<(String, i64)>) -> Vec<(ReviewState, u64)> {
    ReviewState::ALL
        .into_iter()
        .map(|s| {
            let n = rows
                .iter()
                .filter(|(st, _)| st == s.as_str())
                .map(|(_, n)| (*n).max(0) as u64)
                .sum();
            (s, n)
        })
        .collect()
}

/// Which index the filters leave to the planner.
#[derive(Clone, Copy, PartialEq)]
enum Lead {
    /// The filters' own (the image filter a substring test on each row).
    Auto,
    /// The image index of the per-image plan: the image filter is said by the caller
    /// (`image = ?` in the list, `image IN (...)` in the counts), every other column only
    /// filters.
    Image,
}

/// The `AND ...` clauses of `f` with `?` placeholders, and their values: the filters, the
/// review state and the cursor.
fn filters(f: &AlertFilter, dialect: Dialect, lead: Lead) -> (String, Vec<SqlArg>) {
    let selective = has_selective_filter(f);
    let aside = lead == Lead::Image;
    // Of the selective columns, one leads, in this order: the workload (a few objects), the
    // namespace (its index also holds rule, action and state, so those are tested in the
    // index before a row is read), the rule. Without statistics SQLite would take any of them
    // (it took the rule's index for namespace + rule: 17 ms against 1 ms).
    let (by_name, by_namespace) = (f.workload.is_some(), f.namespace.is_some());
    let mut sql = String::new();
    let mut args = Vec::new();
    let text = |s: &str| SqlArg::Text(s.to_string());
    if let Some(t) = f.since {
        sql.push_str(" AND time >= ?");
        args.push(SqlArg::Text(rfc3339(t)));
    }
    if let Some(a) = f.action {
        sql.push_str(&dialect.equal("action", selective || aside));
        args.push(text(a.as_str()));
    }
    if let Some(o) = f.origin {
        sql.push_str(&dialect.equal("origin", selective || aside));
        args.push(text(o.as_str()));
    }
    if let Some(n) = &f.namespace {
        sql.push_str(&dialect.equal("namespace", aside || by_name));
        args.push(text(n));
    }
    if let Some(r) = &f.rule {
        sql.push_str(&dialect.equal("rule", aside || by_name || by_namespace));
        args.push(text(r));
    }
    if let (Some(i), Lead::Auto) = (&f.image, lead) {
        sql.push_str(&format!(" AND {}(image, ?) > 0", dialect.substr()));
        args.push(text(i));
    }
    if let Some(w) = &f.workload {
        sql.push_str(&dialect.equal("name", aside));
        args.push(text(w));
    }
    if let Some(c) = &f.cve {
        sql.push_str(" AND id IN (SELECT alert_id FROM alert_vulns WHERE vuln_id = ?)");
        args.push(text(c));
    }
    if let Some(s) = f.state {
        sql.push_str(&dialect.equal("state", selective || aside));
        args.push(text(s.as_str()));
    }
    if let Some(c) = &f.after {
        // `time <= ?` is implied by the OR, and said for the planner: it bounds the scan of a
        // `time` index from above, so a next page reads from the cursor on.
        sql.push_str(" AND time <= ? AND (time < ? OR (time = ? AND id < ?))");
        args.push(SqlArg::Text(rfc3339(c.time)));
        args.push(SqlArg::Text(rfc3339(c.time)));
        args.push(SqlArg::Text(rfc3339(c.time)));
        args.push(SqlArg::Text(c.id.clone()));
    }
    (sql, args)
}
