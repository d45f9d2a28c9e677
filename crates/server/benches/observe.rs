//! The hand-built observability pieces against the maintained crates, side by side in one run
//! (issue 21): `observe/sink.rs`'s `LogSink` against tracing-appender's non-blocking writer,
//! and the cost of prometheus-client's `Histogram` (the admission latency histogram; it
//! replaced a hand-built lock-free one after this benchmark measured the crate's twice as
//! fast: docs/benchmarks-history.md). Every case runs on 2 threads at once, as the webhook's workers do on this 2-core
//! machine; one iteration is one operation on each thread.
//!
//! `cargo bench -p vulngate-server --bench observe` (figures in docs/benchmarks.md).

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use vulngate_server::observe::sink::LogSink;

const THREADS: usize = 2;

/// Runs `op(i)` for `i in 0..iters` on each of [`THREADS`] threads at once; the wall time.
fn concurrently(iters: u64, op: impl Fn(u64) + Sync) -> Duration {
    let barrier = std::sync::Barrier::new(THREADS + 1);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                barrier.wait();
                for i in 0..iters {
                    op(i);
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins the threads before it returns.
        start
    })
    .elapsed()
}

/// Latencies as the webhook observes them (seconds): mostly warm, some cold.
const LATENCIES: [f64; 8] = [
    0.000_21, 0.000_34, 0.000_18, 0.000_52, 0.001_3, 0.000_27, 0.009, 0.000_3,
];

fn histograms(c: &mut Criterion) {
    let mut g = c.benchmark_group("histogram observe, 2 threads");
    // The admission latency histogram's buckets (observe/metrics.rs).
    let buckets = || exponential_buckets(0.0005, 2.5, 14);
    g.bench_function("prometheus-client Histogram", |b| {
        let h = Histogram::new(buckets());
        b.iter_custom(|iters| {
            concurrently(iters, |i| h.observe(black_box(LATENCIES[(i % 8) as usize])))
        });
    });
    g.finish();
}

/// A decision log line as `observe/log.rs` writes it (about 480 bytes).
fn decision_line() -> Vec<u8> {
    let mut line = br#"{"timestamp":"2026-12-07T02:10:50.123456Z","level":"INFO","fields":{"message":"admission decision","uid":"705ab4f5-6393-11e8-b7cc-42010a800002","operation":"Create","namespace":"prod-shop","kind":"Deployment","name":"shop-api","user":"system:serviceaccount:kube-system:deployment-controller","image":"registry.example.com/shop/api:1.4.2","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","decision":"allow","reason":"no rule fired","rules_version":"3f2a9c0d1e4b5a67","dry_run":false,"break_glass":false},"target":"vulngate::decision"}"#.to_vec();
    line.push(b'\n');
    line
}

/// CPU work of about a warm review between two log lines (tens of microseconds).
fn request_work() {
    let mut x = 0u64;
    for i in 0..20_000u64 {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    black_box(x);
}

fn dev_null() -> File {
    File::create("/dev/null").expect("/dev/null")
}

/// Lines from 2 threads until every line is written out (the writer's guard is dropped inside
/// the timing: its thread's work counts).
fn log_writers(c: &mut Criterion) {
    let line = decision_line();
    for (name, paced) in [
        ("log line, 2 threads, flood", false),
        ("log line + request work, 2 threads", true),
    ] {
        let mut g = c.benchmark_group(name);
        if paced {
            g.sample_size(20);
            g.bench_function("no log line (baseline)", |b| {
                b.iter_custom(|iters| concurrently(iters, |_| request_work()));
            });
        }
        g.bench_function("hand-built LogSink", |b| {
            b.iter_custom(|iters| {
                let (sink, guard) = LogSink::spawn(dev_null()).expect("sink");
                let start = Instant::now();
                concurrently(iters, |_| {
                    if paced {
                        request_work();
                    }
                    sink.append(&line);
                });
                drop(guard);
                start.elapsed()
            });
        });
        g.bench_function("tracing-appender non_blocking (lossless)", |b| {
            b.iter_custom(|iters| {
                let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                    .lossy(false)
                    .finish(dev_null());
                let start = Instant::now();
                concurrently(iters, |_| {
                    if paced {
                        request_work();
                    }
                    let mut w = writer.clone();
                    let _ = w.write_all(&line);
                });
                drop(guard);
                start.elapsed()
            });
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = histograms, log_writers
}
criterion_main!(benches);
