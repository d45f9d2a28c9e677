//! The review web console (issue 19 item 3) in a real headless browser: Debian's chromium
//! driven through chromedriver with fantoccini, against the review listener over TLS. Login,
//! the alerts table and filters, an alert's detail with its violations and rule snapshot,
//! acknowledging with a comment, the rules view and the what-if form; labels on every field.
//! And the same console without JavaScript: plain form posts, redirects, CSRF checked.
//!
//! `VULNGATE_UPDATE_SCREENSHOTS=1` writes the screenshots of docs/review.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;
use support::*;
use vulngate_server::review::{ReviewConfig, Role, TokenConfig};
use vulngate_server::Server;

const READER: &str = "reader-token-0123456789abcdef";
const REVIEWER: &str = "reviewer-token-0123456789abcdef";
const INSTALL: &str = "scripts/install-test-tools.sh";

fn tools_bin() -> PathBuf {
    std::env::var_os("VULNGATE_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/vulngate-tools")
        })
        .join("bin")
}

/// A browser tool: in the tools cache, else /usr/bin; panics with the install command.
fn tool(name: &str) -> PathBuf {
    for c in [tools_bin().join(name), PathBuf::from("/usr/bin").join(name)] {
        if let Ok(real) = c.canonicalize() {
            return real;
        }
    }
    panic!(
        "{name} not found in {} or /usr/bin: run {INSTALL}",
        tools_bin().display()
    );
}

struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(tool("chromedriver"))
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver { child, port };
    let until = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "chromedriver did not listen on {port} within 20s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    driver
}

fn review_config(dir: &Path) -> ReviewConfig {
    std::fs::write(dir.join("reader.token"), READER).unwrap();
    std::fs::write(dir.join("reviewer.token"), REVIEWER).unwrap();
    ReviewConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tokens: vec![
            TokenConfig {
                name: "ci-reader".into(),
                role: Role::Reader,
                token_file: dir.join("reader.token"),
            },
            TokenConfig {
                name: "sec-team".into(),
                role: Role::Reviewer,
                token_file: dir.join("reviewer.token"),
            },
        ],
        ..ReviewConfig::default()
    }
}

struct Running {
    _dir: tempfile::TempDir,
    port: u16,
    ca: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<vulngate_server::Result<()>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

/// The server over TLS with three alerts, and the review listener's port.
async fn serve() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), Some(RULES));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics.listen = None;
    cfg.cluster_name = Some("aks-prod-1".into());
    cfg.review = Some(review_config(dir.path()));
    let server = Server::with_source(cfg.clone(), TestSource::new()).unwrap();
    admit(
        &server,
        &create(&deployment("prod-shop", &[DEBIAN, ALPINE])),
    )
    .await;
    admit(
        &server,
        &create(&workload("Deployment", "api", "dev", &[DEBIAN])),
    )
    .await;
    admit(
        &server,
        &create(&workload("Pod", "tool", "prod-tools", &[GRYPE])),
    )
    .await;
    let tls = vulngate_server::tls::setup(&cfg).unwrap();
    let webhook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let review = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = review.local_addr().unwrap().port();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.with_review_listener(review).serve_on(
        webhook,
        tls.server_config,
        async {
            let _ = rx.await;
        },
    ));
    Running {
        ca: tls.ca_file.unwrap(),
        _dir: dir,
        port,
        stop: Some(stop),
        task,
    }
}

fn save_screenshot(name: &str, png: &[u8]) {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&out, png).unwrap();
    if std::env::var_os("VULNGATE_UPDATE_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs")
            .join(name);
        std::fs::write(docs, png).unwrap();
    }
    assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let running = serve().await;
    let driver = start_driver();
    let chromium = tool("chromium");
    let caps = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--ignore-certificate-errors", "--window-size=1280,1000"]
        }
    });
    let caps = match caps {
        serde_json::Value::Object(m) => m,
        _ => unreachable!(),
    };
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("chromedriver session");
    let base = format!("https://localhost:{}", running.port);

    // Not logged in: the login page.
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with("/login"));
    // A wrong token is refused with a message.
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("not-a-token-at-all")
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("form[action='/login'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The click submits the form: wait for the answer page, do not race it.
    let err = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("p.error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(err.contains("not valid"), "{err}");
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(REVIEWER)
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("form[action='/login'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The alerts table with counts.
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("[data-state=open]"))
        .await
        .unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with('/'));
    let rows = c.find_all(Locator::Css("table tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 3);
    let open = c
        .find(Locator::Css("[data-state=open]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(open, "3");
    // Every visible field has a label.
    let unlabeled = c
        .execute(
            "return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))\
             .filter(e => !e.labels || e.labels.length === 0).map(e => e.name)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabeled, json!([]), "fields without a label");
    // Keyboard: the first Tab reaches the skip link.
    c.execute("document.activeElement.blur()", vec![])
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("\u{E004}")
        .await
        .unwrap();
    let focused = c
        .execute("return document.activeElement.className", vec![])
        .await
        .unwrap();
    assert_eq!(focused, json!("skip"));
    save_screenshot("review-alerts.png", &c.screenshot().await.unwrap());

    // Filter by namespace.
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("f-namespace"))
        .await
        .unwrap()
        .send_keys("prod-shop")
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("form.filters button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_url(&c, "namespace=prod-shop").await;
    let rows = c.find_all(Locator::Css("table tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(c
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("namespace=prod-shop"));

    // The alert: violations (deciding marked), rule snapshot; acknowledge with a comment.
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("table tbody tr td a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_url(&c, "/alerts/").await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("pre.snapshot"))
        .await
        .unwrap();
    let deciding = c.find_all(Locator::Css("tr.deciding")).await.unwrap();
    assert!(!deciding.is_empty());
    let snapshot = c
        .find(Locator::Css("pre.snapshot"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(snapshot.contains("deny-critical-prod"), "{snapshot}");
    assert_eq!(
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Id("state"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "open"
    );
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("comment"))
        .await
        .unwrap()
        .send_keys("Base image rebuild scheduled (JIRA-42)")
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("button[value=acknowledge]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, Locator::Id("state"), "acknowledged").await;
    let history = c
        .find(Locator::Css("ol.history"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(history.contains("sec-team"), "{history}");
    assert!(history.contains("JIRA-42"), "{history}");
    save_screenshot("review-alert.png", &c.screenshot().await.unwrap());

    // Rules.
    c.goto(&format!("{base}/rules")).await.unwrap();
    let text = c
        .find(Locator::Css("table"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("deny-critical-prod") && text.contains("audit-high"),
        "{text}"
    );

    // What if.
    c.goto(&format!("{base}/evaluate")).await.unwrap();
    wait_url(&c, "/evaluate").await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("images"))
        .await
        .unwrap()
        .send_keys(DEBIAN)
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("namespace"))
        .await
        .unwrap()
        .send_keys("prod-payments")
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("form.evaluate button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, Locator::Id("decision"), "deny").await;
    save_screenshot("review-evaluate.png", &c.screenshot().await.unwrap());

    // Log out: back to the login page, the session gone.
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("form[action='/logout'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_url(&c, "/login").await;
    c.goto(&format!("{base}/")).await.unwrap();
    wait_url(&c, "/login").await;

    c.close().await.unwrap();
    drop(driver);
    running.stop().await;
}

/// Waits (at most 10 s) until the browser's URL contains `part`.
async fn wait_url(c: &fantoccini::Client, part: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let url = c.current_url().await.unwrap();
        if url.as_str().contains(part) {
            return;
        }
        assert!(Instant::now() < until, "URL {url} never contained {part}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most 10 s) until the element's text is `want`.
async fn wait_text(c: &fantoccini::Client, loc: Locator<'_>, want: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(e) = c.find(loc).await {
            if let Ok(t) = e.text().await {
                if t == want {
                    return;
                }
                assert!(Instant::now() < until, "text {t:?}, never {want:?}");
            }
        }
        assert!(Instant::now() < until, "{want:?} never shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text between `start` and the next `"` after it.
fn attr_after<'a>(html: &'a str, start: &str) -> &'a str {
    let i = html
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in page"))
        + start.len();
    &html[i..i + html[i..].find('"').unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_without_javascript_and_checks_csrf() {
    let running = serve().await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&running.ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", running.port);
    let r = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");

    let login = |token: &'static str| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let r = client
                .post(format!("{base}/login"))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 303);
            let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
            for attr in ["HttpOnly", "Secure", "SameSite=Strict"] {
                assert!(cookie.contains(attr), "{cookie}");
            }
            cookie.split(';').next().unwrap().to_string()
        }
    };
    let cookie = login(REVIEWER).await;
    let page = client
        .get(format!("{base}/?namespace=prod-shop"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    let href = attr_after(&html, "href=\"/alerts/").to_string();
    let id = href.as_str();
    let detail = client
        .get(format!("{base}/alerts/{id}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = attr_after(&detail, "name=\"csrf\" value=\"").to_string();
    // HTML from alert data is escaped (the image and reason are shown as text).
    assert!(!detail.contains("<script>"));

    // No CSRF token, a wrong one: refused, nothing changed.
    for bad in ["", "0000"] {
        let r = client
            .post(format!("{base}/alerts/{id}"))
            .header("cookie", &cookie)
            .form(&[("csrf", bad), ("change", "resolve"), ("comment", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "csrf {bad:?}");
    }
    // No session: to the login page.
    let r = client
        .post(format!("{base}/alerts/{id}"))
        .form(&[("csrf", csrf.as_str()), ("change", "resolve")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // The right one: post, then redirect to the alert (post/redirect/get).
    let r = client
        .post(format!("{base}/alerts/{id}"))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("change", "resolve"),
            ("comment", "fixed <b>now</b>"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], format!("/alerts/{id}").as_str());
    let detail = client
        .get(format!("{base}/alerts/{id}"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        detail.contains("<strong id=\"state\">resolved</strong>"),
        "{detail}"
    );
    assert!(
        detail.contains("fixed &lt;b&gt;now&lt;/b&gt;"),
        "comment not escaped"
    );

    // A reader sees the alert but no review form, and cannot post one.
    let reader = login(READER).await;
    let page = client
        .get(format!("{base}/alerts/{id}"))
        .header("cookie", &reader)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("name=\"change\""));
    let reader_csrf = attr_after(&page, "name=\"csrf\" value=\"").to_string();
    let r = client
        .post(format!("{base}/alerts/{id}"))
        .header("cookie", &reader)
        .form(&[("csrf", reader_csrf.as_str()), ("change", "reopen")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The API does not take the session cookie.
    let r = client
        .get(format!("{base}/api/v1/alerts"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    running.stop().await;
}
