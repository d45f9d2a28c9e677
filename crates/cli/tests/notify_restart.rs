//! The notification outbox survives `vulngate serve` being killed (SIGKILL): an alert whose
//! notification could not be delivered before the kill is delivered, once, by the restarted
//! server (the real binary; a real HTTP receiver on 127.0.0.1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../server/tests/support/receiver.rs"]
mod receiver;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use receiver::{Mode, Receiver};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "a-notification-secret-0123456789";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
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

async fn start(config: &Path, data: &Path, log: &Path) -> (Served, reqwest::Client) {
    let port = free_port();
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_vulngate"))
        .args(["serve", "--config"])
        .arg(config)
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("vulngate serve starts");
    let mut served = Served { child, port };
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "vulngate serve did not become ready"
        );
        if let Ok(Some(status)) = served.child.try_wait() {
            panic!("vulngate serve exited: {status}");
        }
        if let Ok(pem) = std::fs::read(data.join("ca.crt")) {
            let ca = reqwest::Certificate::from_pem(&pem).unwrap();
            let client = reqwest::Client::builder()
                .add_root_certificate(ca)
                .build()
                .unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_survives_a_kill_and_the_restarted_server_delivers_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let secret = dir.path().join("notify.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let rx = Receiver::start(Mode::Fail(503)).await;
    let config = dir.path().join("vulngate.yaml");
    let examples = repo().join("examples");
    std::fs::write(
        &config,
        format!(
            "rules: {rules}\nfindingsDir: {findings}\nclusterName: example-cluster\n\
             notify:\n  pollInterval: 50ms\n  initialBackoff: 50ms\n  maxBackoff: 200ms\n  \
             timeout: 2s\n  connectTimeout: 1s\n  maxAttempts: 1000\n  sinks:\n    - name: soc\n      \
             type: webhook\n      url: \"{url}\"\n      secretFile: {secret}\n",
            rules = examples.join("rules.yaml").display(),
            findings = examples.join("findings").display(),
            url = rx.url("/hook"),
            secret = secret.display(),
        ),
    )
    .unwrap();
    let review: Value =
        serde_json::from_slice(&std::fs::read(examples.join("admission-review.json")).unwrap())
            .unwrap();

    let alert_id = {
        let (served, client) = start(&config, &data, &log).await;
        let resp: Value = client
            .post(format!(
                "https://127.0.0.1:{}/validate?timeout=10s",
                served.port
            ))
            .json(&review)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(resp["response"]["allowed"], false, "{resp}");
        let id = resp["response"]["auditAnnotations"]["alert-id"]
            .as_str()
            .expect("an alert id")
            .to_string();
        // Attempted (and refused) at least once: the entry is in the outbox.
        rx.wait_for("an attempt", |g| !g.is_empty()).await;
        id
    }; // SIGKILL: no shutdown, no flush
    let before = rx.received().len();
    assert!(rx.delivered().is_empty());
    rx.set_mode(Mode::Ok);

    let (_served, _client) = start(&config, &data, &log).await;
    let got = rx
        .wait_for("the delivery after the restart", |g| {
            g.iter().any(|r| r.answered == 200)
        })
        .await;
    let ok: Vec<_> = got.iter().filter(|r| r.answered == 200).collect();
    assert_eq!(ok.len(), 1);
    assert!(got.len() > before);
    let body = ok[0].json();
    assert_eq!(body["id"], alert_id.as_str());
    assert_eq!(body["action"], "deny");
    // Signed with the key from secretFile.
    let ts = ok[0].header("x-vulngate-timestamp");
    let sig = ok[0].header("x-vulngate-signature");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&ok[0].body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sig, format!("sha256={hex}"));
    // Exactly once: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.delivered().len(), 1);
    // The secret is never in the log.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(SECRET));
    assert!(text.contains("notification delivered"), "{text}");
}
