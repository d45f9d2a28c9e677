//! The alert schema of both stores, side by side: the same tables and columns, the same
//! migration numbers. A new migration adds one entry with its SQLite and its PostgreSQL text;
//! the stores apply the entries above the highest version in their `schema_migrations` table
//! and refuse to open a database whose version is newer than the last entry here.
//!
//! The dialects differ only where they must: PostgreSQL has a real `BOOLEAN` for `dry_run` and
//! compares `id`/`time` with the `"C"` collation (byte order, as SQLite's default `BINARY`
//! does, whatever the database's locale), so "newest first" orders identically in both.
//! `time` is fixed-width RFC 3339 UTC text in both, which sorts chronologically as text.

/// One schema migration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// The version table, created before anything else (same columns in both stores).
pub(crate) const SQLITE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY NOT NULL,
    description TEXT NOT NULL,
    applied_at  TEXT NOT NULL
);";
pub(crate) const POSTGRES_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version     BIGINT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL,
    applied_at  TEXT NOT NULL
);";

/// The migrations, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "alerts table",
        sqlite: "CREATE TABLE alerts (
        id         TEXT PRIMARY KEY NOT NULL,
        time       TEXT NOT NULL,
        action     TEXT NOT NULL,
        cluster    TEXT,
        namespace  TEXT,
        kind       TEXT NOT NULL,
        name       TEXT,
        operation  TEXT NOT NULL,
        user_name  TEXT,
        image      TEXT NOT NULL,
        digest     TEXT,
        rule       TEXT,
        dry_run    INTEGER NOT NULL,
        data       TEXT NOT NULL
    );
    CREATE INDEX alerts_time ON alerts (time);
    CREATE INDEX alerts_namespace ON alerts (namespace, time);
    CREATE INDEX alerts_rule ON alerts (rule, time);",
        postgres: r#"CREATE TABLE alerts (
        id         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        time       TEXT COLLATE "C" NOT NULL,
        action     TEXT NOT NULL,
        cluster    TEXT,
        namespace  TEXT,
        kind       TEXT NOT NULL,
        name       TEXT,
        operation  TEXT NOT NULL,
        user_name  TEXT,
        image      TEXT NOT NULL,
        digest     TEXT,
        rule       TEXT,
        dry_run    BOOLEAN NOT NULL,
        data       TEXT NOT NULL
    );
    CREATE INDEX alerts_time ON alerts (time);
    CREATE INDEX alerts_namespace ON alerts (namespace, time);
    CREATE INDEX alerts_rule ON alerts (rule, time);"#,
    },
    Migration {
        version: 2,
        description: "alert origin (admission, runtime)",
        sqlite: "ALTER TABLE alerts ADD COLUMN origin TEXT NOT NULL DEFAULT 'admission';",
        postgres: "ALTER TABLE alerts ADD COLUMN origin TEXT NOT NULL DEFAULT 'admission';",
    },
    // Self-contained (issue 18): the de-duplication key of each alert (NULL for alerts stored
    // before: they never absorb repeats) and the ids of the repeats absorbed, so that a
    // journal replay of a repeat is recognised and not counted twice.
    Migration {
        version: 3,
        description: "alert de-duplication (key, absorbed repeats)",
        sqlite: "ALTER TABLE alerts ADD COLUMN dedup_key TEXT;
    CREATE INDEX alerts_dedup ON alerts (dedup_key, time);
    CREATE TABLE alert_repeats (
        id       TEXT PRIMARY KEY NOT NULL,
        alert_id TEXT NOT NULL,
        time     TEXT NOT NULL
    );",
        postgres: r#"ALTER TABLE alerts ADD COLUMN dedup_key TEXT COLLATE "C";
    CREATE INDEX alerts_dedup ON alerts (dedup_key, time);
    CREATE TABLE alert_repeats (
        id       TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        alert_id TEXT COLLATE "C" NOT NULL,
        time     TEXT COLLATE "C" NOT NULL
    );"#,
    },
    // Self-contained (touches only the `state` column and its own tables), so it can be
    // renumbered when merged after other migrations.
    Migration {
        version: 4,
        description: "review state and history; vulnerability ids of alerts",
        sqlite: "ALTER TABLE alerts ADD COLUMN state TEXT NOT NULL DEFAULT 'open';
    CREATE TABLE alert_reviews (
        alert_id   TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        time       TEXT NOT NULL,
        user_name  TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state   TEXT NOT NULL,
        comment    TEXT NOT NULL,
        PRIMARY KEY (alert_id, seq)
    );
    CREATE TABLE alert_vulns (
        vuln_id  TEXT NOT NULL,
        alert_id TEXT NOT NULL,
        PRIMARY KEY (vuln_id, alert_id)
    );
    INSERT OR IGNORE INTO alert_vulns (vuln_id, alert_id)
        SELECT j.value, a.id FROM alerts a, json_each(a.data, '$.vulnerability.ids') j
        WHERE json_valid(a.data) AND json_type(a.data, '$.vulnerability.ids') = 'array';
    CREATE INDEX alerts_state ON alerts (state, time);
    CREATE INDEX alerts_name ON alerts (name, time);
    CREATE INDEX alerts_action ON alerts (action, time);",
        postgres: r#"ALTER TABLE alerts ADD COLUMN state TEXT NOT NULL DEFAULT 'open';
    CREATE TABLE alert_reviews (
        alert_id   TEXT COLLATE "C" NOT NULL,
        seq        BIGINT NOT NULL,
        time       TEXT COLLATE "C" NOT NULL,
        user_name  TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state   TEXT NOT NULL,
        comment    TEXT NOT NULL,
        PRIMARY KEY (alert_id, seq)
    );
    CREATE TABLE alert_vulns (
        vuln_id  TEXT COLLATE "C" NOT NULL,
        alert_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (vuln_id, alert_id)
    );
    INSERT INTO alert_vulns (vuln_id, alert_id)
        SELECT DISTINCT j.value, a.id
        FROM alerts a, jsonb_array_elements_text(
            CASE WHEN jsonb_typeof(a.data::jsonb -> 'vulnerability' -> 'ids') = 'array'
                 THEN a.data::jsonb -> 'vulnerability' -> 'ids' ELSE '[]'::jsonb END) j
        ON CONFLICT DO NOTHING;
    CREATE INDEX alerts_state ON alerts (state, time);
    CREATE INDEX alerts_name ON alerts (name, time);
    CREATE INDEX alerts_action ON alerts (action, time);"#,
    },
    // Self-contained (its own table only), so it can be renumbered when merged after other
    // migrations. One row per (new alert, matching sink), written in the alert's own
    // transaction; a delivered row is deleted, a dead one stays until retried.
    Migration {
        version: 5,
        description: "notification outbox",
        sqlite: "CREATE TABLE notify_outbox (
        id         TEXT PRIMARY KEY NOT NULL,
        alert_id   TEXT NOT NULL,
        sink       TEXT NOT NULL,
        state      TEXT NOT NULL,
        attempts   INTEGER NOT NULL,
        created    TEXT NOT NULL,
        next_at    TEXT NOT NULL,
        last_error TEXT,
        UNIQUE (alert_id, sink)
    );
    CREATE INDEX notify_outbox_due ON notify_outbox (state, next_at);",
        postgres: r#"CREATE TABLE notify_outbox (
        id         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        alert_id   TEXT COLLATE "C" NOT NULL,
        sink       TEXT NOT NULL,
        state      TEXT NOT NULL,
        attempts   BIGINT NOT NULL,
        created    TEXT COLLATE "C" NOT NULL,
        next_at    TEXT COLLATE "C" NOT NULL,
        last_error TEXT,
        UNIQUE (alert_id, sink)
    );
    CREATE INDEX notify_outbox_due ON notify_outbox (state, next_at);"#,
    },
    // The review API's list over many alerts (alerts/query.rs): the image filter's per-image
    // plan (the distinct image references, and the newest alerts of one reference through
    // (image, time, id): the page's ids read from the index alone), and a namespace index that
    // also holds the columns filtered with it.
    Migration {
        version: 6,
        description: "image references, the image index, a wider namespace index",
        sqlite: "CREATE TABLE alert_images (image TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;
    INSERT OR IGNORE INTO alert_images (image) SELECT DISTINCT image FROM alerts;
    CREATE INDEX alerts_image ON alerts (image, time, id);
    DROP INDEX alerts_namespace;
    CREATE INDEX alerts_namespace ON alerts (namespace, time, rule, action, state);",
        postgres: r#"CREATE TABLE alert_images (image TEXT PRIMARY KEY NOT NULL);
    INSERT INTO alert_images (image) SELECT DISTINCT image FROM alerts ON CONFLICT DO NOTHING;
    CREATE INDEX alerts_image ON alerts (image, time, id);
    DROP INDEX alerts_namespace;
    CREATE INDEX alerts_namespace ON alerts (namespace, time, rule, action, state);"#,
    },
    // Self-contained (its own table only). The counts of an alert that absorbed repeats
    // (`Seen` in alerts/mod.rs): a repeat updates this small row, not the alert's `data`. An
    // alert without a row has its counts in `data` (as every alert stored before).
    Migration {
        version: 7,
        description: "counts of alerts that absorbed repeats",
        sqlite: "CREATE TABLE alert_counts (
        alert_id  TEXT PRIMARY KEY NOT NULL,
        count     INTEGER NOT NULL,
        last_seen TEXT,
        kinds     TEXT NOT NULL
    ) WITHOUT ROWID;",
        postgres: r#"CREATE TABLE alert_counts (
        alert_id  TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        count     BIGINT NOT NULL,
        last_seen TEXT COLLATE "C",
        kinds     TEXT NOT NULL
    );"#,
    },
    // Self-contained (its own table only). SQLite: the repeats table without a rowid, so a
    // repeat is one entry in one b-tree (its id, a UUIDv7: appended at the right edge)
    // instead of a row and an index entry; the pages a deny storm's commit writes (and
    // fsyncs) drop accordingly (docs/benchmarks.md). PostgreSQL keeps its table.
    Migration {
        version: 8,
        description: "alert repeats in one b-tree (SQLite)",
        sqlite: "CREATE TABLE alert_repeats_new (
        id       TEXT PRIMARY KEY NOT NULL,
        alert_id TEXT NOT NULL,
        time     TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO alert_repeats_new (id, alert_id, time) SELECT id, alert_id, time FROM alert_repeats;
    DROP TABLE alert_repeats;
    ALTER TABLE alert_repeats_new RENAME TO alert_repeats;",
        postgres: "SELECT 1;",
    },
];

/// The newest schema version this build knows.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.description);
        }
    }
}
