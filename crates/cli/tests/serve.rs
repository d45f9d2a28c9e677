//! `vulngate serve` and `vulngate alerts`: the real binary over real TLS, with the example
//! configuration (rules and findings directory), and alerts that survive a restart.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start(data: &Path) -> (Served, reqwest::Client) {
    let port = free_port();
    let child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(repo().join("examples/vulngate.yaml"))
        .args([
            "--metrics-listen",
            "127.0.0.1:0",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("vulngate serve starts");
    let served = Served { child, port };
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "vulngate serve did not become ready"
        );
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

fn alerts(data: &Path, extra: &[&str]) -> Value {
    let out = Command::new(bin())
        .args(["alerts", "list", "--output", "json", "--data-dir"])
        .arg(data)
        .args(extra)
        .output()
        .expect("alerts list runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("alerts list prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_denies_records_an_alert_and_keeps_it_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let review: Value = serde_json::from_slice(
        &std::fs::read(repo().join("examples/admission-review.json")).expect("example review"),
    )
    .expect("json");
    {
        let (served, client) = start(&data).await;
        let resp: Value = client
            .post(format!(
                "https://127.0.0.1:{}/validate?timeout=10s",
                served.port
            ))
            .json(&review)
            .send()
            .await
            .expect("validate answers")
            .json()
            .await
            .expect("AdmissionReview JSON");
        let r = &resp["response"];
        assert_eq!(r["uid"], review["request"]["uid"]);
        assert_eq!(r["allowed"], false);
        assert_eq!(r["status"]["code"], 403);
        assert_eq!(
            r["status"]["message"],
            "registry.example.com/shop/api:1.4.2: denied by rule \"deny-critical-prod\": 1 critical or higher vulnerability (CVE-2019-18224), more than the allowed count of 0"
        );
        assert_eq!(r["auditAnnotations"]["decision"], "deny");
    }
    let list = alerts(&data, &[]);
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 1, "{list:?}");
    let a = &list[0];
    assert_eq!(a["action"], "deny");
    assert_eq!(a["rule"], "deny-critical-prod");
    assert_eq!(a["namespace"], "prod-shop");
    assert_eq!(a["cluster"], "example-cluster");
    assert_eq!(a["user"], "alice@example.com");
    assert_eq!(a["vulnerability"]["id"], "CVE-2019-18224");

    // Filters.
    assert_eq!(
        alerts(&data, &["--action", "audit"])
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(
        alerts(&data, &["--namespace", "prod-shop"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        alerts(&data, &["--rule", "other"]).as_array().map(Vec::len),
        Some(0)
    );

    // A restart keeps the alert, and a second identical request is counted into it (one
    // alert per (workload, digest, rule, action) within alerts.dedupWindow).
    let (served, client) = start(&data).await;
    let resp = client
        .post(format!("https://127.0.0.1:{}/validate", served.port))
        .json(&review)
        .send()
        .await
        .expect("validate answers");
    assert!(resp.status().is_success());
    drop(served);
    let list = alerts(&data, &[]);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["count"], 2, "the repeat is counted: {list}");
    assert_eq!(list[0]["id"], a["id"], "the first alert keeps its id");

    let id = a["id"].as_str().expect("id");
    let out = Command::new(bin())
        .args(["alerts", "show", id, "--data-dir"])
        .arg(&data)
        .output()
        .expect("alerts show runs");
    assert!(out.status.success());
    let shown: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(shown["id"], id);
    assert_eq!(shown["reason"], a["reason"]);
}

#[test]
fn alerts_without_a_store_and_unknown_ids_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bin())
        .args(["alerts", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no alert store"));
}

#[test]
fn serve_rejects_a_bad_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("vulngate.yaml");
    std::fs::write(&cfg, "listen: 127.0.0.1:8443\nfailurPolicy: allow\n").expect("write");
    let out = Command::new(bin())
        .args(["serve", "--check-config", "--config"])
        .arg(&cfg)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failurPolicy"), "{err}");
    let out = Command::new(bin())
        .args([
            "serve",
            "--check-config",
            "--listen",
            "127.0.0.1:9999",
            "--config",
        ])
        .arg(repo().join("examples/vulngate.yaml"))
        .output()
        .expect("runs");
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("127.0.0.1:9999"), "{printed}");
}
