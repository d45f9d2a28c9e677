//! `vulngate serve --store postgres://...` and `vulngate alerts --store/--config`: the real
//! binary against a real PostgreSQL 15 server (crates/server/tests/support/postgres.rs).

#[path = "../../server/tests/support/postgres.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pg::{Postgres, PASSWORD};
use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vulngate")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Served {
    child: Child,
    port: u16,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vulngate serve` on the example configuration with `--store`, the password in
/// `VULNGATE_STORE_PASSWORD`, its log appended to `log`.
async fn start(data: &Path, store: &str, log: &Path) -> (Served, reqwest::Client) {
    let port = pg::free_port();
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(repo().join("examples/vulngate.yaml"))
        .args([
            "--metrics-listen",
            "127.0.0.1:0",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
            store,
        ])
        .arg("--data-dir")
        .arg(data)
        .env("VULNGATE_STORE_PASSWORD", PASSWORD)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("vulngate serve starts");
    let mut served = Served { child, port };
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "vulngate serve did not become ready"
        );
        if let Ok(Some(status)) = served.child.try_wait() {
            panic!("vulngate serve exited: {status}");
        }
        if let Ok(pem) = std::fs::read(data.join("ca.crt")) {
            let ca = reqwest::Certificate::from_pem(&pem).expect("CA bundle is PEM");
            let client = reqwest::Client::builder()
                .add_root_certificate(ca)
                .build()
                .expect("client");
            let ready = client
                .get(format!("https://127.0.0.1:{port}/readyz"))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return (served, client);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn validate(served: &Served, client: &reqwest::Client, review: &Value) -> Value {
    client
        .post(format!(
            "https://127.0.0.1:{}/validate?timeout=10s",
            served.port
        ))
        .json(review)
        .send()
        .await
        .expect("validate answers")
        .json()
        .await
        .expect("AdmissionReview JSON")
}

fn vulngate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("VULNGATE_STORE_PASSWORD")
        .env_remove("PGPASSWORD");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("vulngate runs")
}

fn json_ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_postgres_keeps_alerts_across_a_restart() {
    let server = Postgres::start();
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let review: Value = serde_json::from_slice(
        &std::fs::read(repo().join("examples/admission-review.json")).expect("example review"),
    )
    .expect("json");

    let first_id = {
        let (served, client) = start(&data, &url, &log).await;
        let resp = validate(&served, &client, &review).await;
        let r = &resp["response"];
        assert_eq!(r["allowed"], false);
        assert_eq!(r["status"]["code"], 403);
        r["auditAnnotations"]["alert-id"]
            .as_str()
            .expect("alert id")
            .to_string()
    }; // killed
    {
        let (served, client) = start(&data, &url, &log).await;
        let resp = validate(&served, &client, &review).await;
        assert_eq!(resp["response"]["allowed"], false);
    }
    // Nothing went to SQLite.
    assert!(!data.join("alerts.db").exists());

    // --store with the password from the environment.
    let pw = [("VULNGATE_STORE_PASSWORD", PASSWORD)];
    let list = json_ok(&vulngate(
        &["alerts", "list", "--store", &url, "--output", "json"],
        &pw,
    ));
    let list = list.as_array().expect("array");
    // The second, identical review after the restart is counted into the first alert (one
    // alert per (workload, digest, rule, action) within alerts.dedupWindow).
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["count"], 2, "{list:?}");
    assert!(list.iter().any(|a| a["id"] == first_id.as_str()));
    assert!(list.iter().all(|a| a["action"] == "deny"
        && a["rule"] == "deny-critical-prod"
        && a["namespace"] == "prod-shop"));
    // PGPASSWORD works too; filters apply.
    let list = json_ok(&vulngate(
        &[
            "alerts", "list", "--store", &url, "-o", "json", "--action", "audit",
        ],
        &[("PGPASSWORD", PASSWORD)],
    ));
    assert_eq!(list.as_array().map(Vec::len), Some(0));

    // --config: store and storePasswordFile from vulngate.yaml.
    let cfg = dir.path().join("vulngate.yaml");
    std::fs::write(dir.path().join("pg-password"), format!("{PASSWORD}\n")).expect("pw");
    std::fs::write(
        &cfg,
        format!("store: \"{url}\"\nstorePasswordFile: pg-password\n"),
    )
    .expect("config");
    let shown = json_ok(&vulngate(
        &[
            "alerts",
            "show",
            &first_id,
            "--config",
            cfg.to_str().expect("utf-8"),
        ],
        &[],
    ));
    assert_eq!(shown["id"], first_id.as_str());
    assert_eq!(shown["vulnerability"]["id"], "CVE-2019-18224");

    // Without a password: a clear error, exit 2.
    let out = vulngate(&["alerts", "list", "--store", &url], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alert database postgres://vulngate@127.0.0.1"),
        "{err}"
    );

    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("vulngate webhook serving"), "{logged}");
    assert!(logged.contains(&url), "store not logged: {logged}");
    assert!(!logged.contains(PASSWORD), "password in the serve log");
}

#[test]
fn serve_with_postgres_unreachable_fails_clearly_without_the_password() {
    let mut server = Postgres::start();
    let with_pw = server.url_with_password(PASSWORD);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");

    // --check-config prints the store redacted.
    let out = vulngate(
        &[
            "serve",
            "--check-config",
            "--store",
            &with_pw,
            "--data-dir",
            data,
        ],
        &[],
    );
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("store: postgres://vulngate:***@127.0.0.1"),
        "{printed}"
    );
    assert!(!printed.contains(PASSWORD), "{printed}");

    // A bad --store is not echoed.
    let bad = with_pw.replace("sslmode=disable", "sslmode=allow");
    let out = vulngate(&["serve", "--check-config", "--store", &bad], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sslmode=allow"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");

    server.stop();
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--metrics-listen",
            "127.0.0.1:0",
            "--listen",
            &format!("127.0.0.1:{}", pg::free_port()),
        ])
        .args(["--store", &with_pw, "--data-dir", data])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve runs");
    let started = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("vulngate serve kept running without its store");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().expect("output");
    assert_eq!(status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alert database postgres://vulngate:***@127.0.0.1"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");
}
