//! The load client of scripts/soak.sh: AdmissionReviews (a Deployment with one container, a
//! new uid each) sent to `vulngate serve` over HTTPS/1.1 keep-alive, either open-loop at a
//! fixed rate (`--rate`, arrivals paced every 10 ms whatever the answers' latency) or
//! closed-loop (`--connections`, as fast as answers come back). Images are drawn by weight
//! from classes, each with the answer it must get; the result is one JSON object on stdout:
//! answers by HTTP status and admission code, transport errors, answers that differ from
//! the class's expectation, latency percentiles, and the server's RSS sampled every 10 s.
//!
//! ```text
//! cargo run --release -p vulngate-server --example soak_load -- --url https://127.0.0.1:8443/validate?timeout=10s \
//!     --duration 600 --rate 1000 --class clean=clean.txt:60:allow --class vulnerable=vuln.txt:30:deny \
//!     [--pid VULNGATE_PID] [--label soak] [--max-in-flight 4096]
//! ```
//!
//! A review the client cannot start because `--max-in-flight` answers are pending is counted
//! in `not_sent` (the offered rate was not reached); the soak treats it as a failure.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allow,
    Deny,
}

#[derive(Debug)]
struct Class {
    name: String,
    images: Vec<String>,
    weight: u32,
    expect: Expect,
    next: AtomicU64,
}

/// One answer (or failure) as the aggregator counts it.
#[derive(Debug)]
struct Outcome {
    class: usize,
    micros: u64,
    /// `Err`: a transport error (connect, TLS, reset, timeout, unreadable body).
    result: Result<Answer, String>,
}

#[derive(Debug)]
struct Answer {
    http: u16,
    /// `response.allowed`, `response.status.code` (None when absent).
    allowed: Option<bool>,
    code: Option<u64>,
}

#[derive(Debug, Default)]
struct ClassStats {
    sent: u64,
    allowed: u64,
    denied_403: u64,
    mismatched: u64,
    latencies: Vec<u64>,
}

fn main() -> Result<(), BoxError> {
    let mut url = None;
    let mut duration = 20u64;
    let mut rate = None;
    let mut connections = None;
    let mut classes = Vec::new();
    let mut pid = None;
    let mut label = "load".to_string();
    let mut max_in_flight = 4096usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--url" => url = Some(val()?),
            "--duration" => duration = val()?.parse()?,
            "--rate" => rate = Some(val()?.parse::<u64>()?),
            "--connections" => connections = Some(val()?.parse::<usize>()?),
            "--class" => classes.push(parse_class(&val()?)?),
            "--pid" => pid = Some(val()?.parse::<u32>()?),
            "--label" => label = val()?,
            "--max-in-flight" => max_in_flight = val()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let url = url.ok_or("--url is required")?;
    if classes.is_empty() {
        return Err("at least one --class NAME=FILE:WEIGHT:allow|deny".into());
    }
    if rate.is_some() == connections.is_some() {
        return Err("give exactly one of --rate N and --connections N".into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = rt.block_on(run(Run {
        url,
        duration: Duration::from_secs(duration),
        rate,
        connections,
        classes: Arc::new(classes),
        pid,
        label,
        max_in_flight,
    }))?;
    println!("{out}");
    Ok(())
}

fn parse_class(spec: &str) -> Result<Class, BoxError> {
    let (name, rest) = spec
        .split_once('=')
        .ok_or_else(|| format!("--class {spec}: expected NAME=FILE:WEIGHT:allow|deny"))?;
    let mut parts = rest.rsplitn(3, ':');
    let expect = match parts.next() {
        Some("allow") => Expect::Allow,
        Some("deny") => Expect::Deny,
        other => return Err(format!("--class {spec}: expectation {other:?}").into()),
    };
    let weight: u32 = parts.next().ok_or("--class: no weight")?.parse()?;
    let file = parts.next().ok_or("--class: no file")?;
    let images: Vec<String> = std::fs::read_to_string(file)
        .map_err(|e| format!("{file}: {e}"))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if images.is_empty() {
        return Err(format!("{file}: no images").into());
    }
    Ok(Class {
        name: name.to_string(),
        images,
        weight,
        expect,
        next: AtomicU64::new(0),
    })
}

struct Run {
    url: String,
    duration: Duration,
    rate: Option<u64>,
    connections: Option<usize>,
    classes: Arc<Vec<Class>>,
    pid: Option<u32>,
    label: String,
    max_in_flight: usize,
}

fn review(uid: &str, image: &str) -> Vec<u8> {
    let v = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": { "group": "apps", "version": "v1", "kind": "Deployment" },
            "resource": { "group": "apps", "version": "v1", "resource": "deployments" },
            "name": "web",
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": { "username": "soak@example.com", "groups": ["system:authenticated"] },
            "object": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": { "name": "web", "namespace": "shop", "labels": { "app": "web" } },
                "spec": {
                    "replicas": 1,
                    "selector": { "matchLabels": { "app": "web" } },
                    "template": {
                        "metadata": { "labels": { "app": "web" } },
                        "spec": { "containers": [{ "name": "web", "image": image }] }
                    }
                }
            },
            "oldObject": null,
            "dryRun": false
        }
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Class `n`-th request falls in (weights, deterministic: a multiplicative hash of `n`).
fn pick(classes: &[Class], n: u64) -> usize {
    let total: u64 = classes.iter().map(|c| u64::from(c.weight)).sum();
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11;
    x %= total.max(1);
    for (i, c) in classes.iter().enumerate() {
        if x < u64::from(c.weight) {
            return i;
        }
        x -= u64::from(c.weight);
    }
    0
}

async fn send(client: &reqwest::Client, url: &str, classes: &[Class], n: u64) -> Outcome {
    let class = pick(classes, n);
    let c = &classes[class];
    let i = c.next.fetch_add(1, Ordering::Relaxed) as usize % c.images.len();
    let body = review(&format!("soak-{n:012}"), &c.images[i]);
    let start = Instant::now();
    let result = async {
        let resp = client
            .post(url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("send: {e}"))?;
        let http = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let r = &v["response"];
        Ok(Answer {
            http,
            allowed: r["allowed"].as_bool(),
            code: r["status"]["code"].as_u64(),
        })
    }
    .await;
    Outcome {
        class,
        micros: start.elapsed().as_micros() as u64,
        result,
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn run(r: Run) -> Result<Value, BoxError> {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .pool_max_idle_per_host(r.max_in_flight)
        .timeout(Duration::from_secs(30))
        .build()?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let started = Instant::now();
    let deadline = started + r.duration;

    // RSS of the server every 10 s (and at the start).
    let rss = r.pid.map(|pid| {
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let t0 = Instant::now();
            loop {
                if let Some(k) = rss_kib(pid) {
                    samples.push((t0.elapsed().as_secs(), k));
                }
                if Instant::now() + Duration::from_secs(10) > deadline + Duration::from_secs(1) {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            if let Some(k) = rss_kib(pid) {
                samples.push((t0.elapsed().as_secs(), k));
            }
            samples
        })
    });

    let mut not_sent = 0u64;
    let mut offered = 0u64;
    if let Some(rate) = r.rate {
        // Open loop: every 10 ms, start the requests due by now.
        let sem = Arc::new(Semaphore::new(r.max_in_flight));
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let due = (now - started).as_secs_f64() * rate as f64;
            while (offered as f64) < due {
                let n = offered;
                offered += 1;
                let Ok(permit) = sem.clone().try_acquire_owned() else {
                    not_sent += 1;
                    continue;
                };
                let (client, url, classes, tx) =
                    (client.clone(), r.url.clone(), r.classes.clone(), tx.clone());
                tokio::spawn(async move {
                    let o = send(&client, &url, &classes, n).await;
                    drop(permit);
                    let _ = tx.send(o);
                });
            }
        }
    } else {
        let counter = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for _ in 0..r.connections.unwrap_or(1) {
            let (client, url, classes, tx, counter) = (
                client.clone(),
                r.url.clone(),
                r.classes.clone(),
                tx.clone(),
                counter.clone(),
            );
            workers.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(send(&client, &url, &classes, n).await);
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
        offered = counter.load(Ordering::Relaxed);
    }
    let send_window = started.elapsed();
    drop(tx);

    let mut per: Vec<ClassStats> = r.classes.iter().map(|_| ClassStats::default()).collect();
    let mut http: BTreeMap<String, u64> = BTreeMap::new();
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut transport: BTreeMap<String, u64> = BTreeMap::new();
    let mut all = Vec::new();
    let (mut answered, mut transport_errors) = (0u64, 0u64);
    while let Some(o) = rx.recv().await {
        let s = &mut per[o.class];
        s.sent += 1;
        match o.result {
            Ok(a) => {
                answered += 1;
                *http.entry(a.http.to_string()).or_default() += 1;
                let code = a.code.map_or("none".to_string(), |c| c.to_string());
                *codes.entry(code).or_default() += 1;
                let allowed = a.http == 200 && a.allowed == Some(true);
                let denied = a.http == 200 && a.allowed == Some(false) && a.code == Some(403);
                s.allowed += u64::from(allowed);
                s.denied_403 += u64::from(denied);
                let ok = match r.classes[o.class].expect {
                    Expect::Allow => allowed,
                    Expect::Deny => denied,
                };
                s.mismatched += u64::from(!ok);
                s.latencies.push(o.micros);
                all.push(o.micros);
            }
            Err(e) => {
                transport_errors += 1;
                // The error's kind, without the per-request detail.
                let kind: String = e.chars().take(80).collect();
                *transport.entry(kind).or_default() += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    let rss = match rss {
        Some(h) => h.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let pct = |v: &mut Vec<u64>| {
        v.sort_unstable();
        let at = |p: f64| {
            if v.is_empty() {
                0.0
            } else {
                v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
            }
        };
        json!({ "p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": at(1.0) })
    };
    let mut by_class = serde_json::Map::new();
    let (mut denied, mut allowed, mut mismatched) = (0, 0, 0);
    for (c, s) in r.classes.iter().zip(per.iter_mut()) {
        denied += s.denied_403;
        allowed += s.allowed;
        mismatched += s.mismatched;
        by_class.insert(
            c.name.clone(),
            json!({
                "expect": if c.expect == Expect::Allow { "allow" } else { "deny" },
                "answered": s.latencies.len(),
                "allowed": s.allowed,
                "denied_403": s.denied_403,
                "mismatched": s.mismatched,
                "latency": pct(&mut s.latencies),
            }),
        );
    }
    Ok(json!({
        "label": r.label,
        "mode": if r.rate.is_some() { "open" } else { "closed" },
        "rate": r.rate,
        "connections": r.connections,
        "duration_s": r.duration.as_secs(),
        "send_window_s": send_window.as_secs_f64(),
        "elapsed_s": elapsed.as_secs_f64(),
        "offered": offered,
        "not_sent": not_sent,
        "answered": answered,
        "rps": answered as f64 / send_window.as_secs_f64(),
        "transport_errors": transport_errors,
        "transport_error_kinds": transport,
        "http": http,
        "admission_codes": codes,
        "allowed": allowed,
        "denied_403": denied,
        "mismatched": mismatched,
        "latency": pct(&mut all),
        "by_class": by_class,
        "rss_kib": rss,
    }))
}
