//! The log writer: lines are appended to a shared buffer, and one thread writes the buffer
//! out in batches.
//!
//! Written by hand because the ready-made non-blocking writer (`tracing-appender`) hands every
//! line to its thread through a channel and writes (and flushes) whenever that channel runs
//! empty. At thousands of admission requests per second that meant a wake-up of the writer
//! thread (futex, context switch, `sched_yield` spinning) and a `write(2)` for almost every
//! decision line, on the two cores the requests themselves need. Here a line is one `memcpy`
//! under a mutex; the writer thread is woken only when the buffer turns non-empty or passes
//! [`WAKE_AT`], waits up to [`INTERVAL`] to gather more, and writes everything in one call.
//!
//! Nothing is dropped: when [`CAP`] bytes are pending (the output is slower than the lines),
//! writers wait until the thread has taken the buffer. Dropping the [`LogFlushGuard`] writes
//! what is pending and ends the thread.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer thread gathers lines after the first one of a batch.
pub const INTERVAL: Duration = Duration::from_millis(20);
/// Pending bytes at which the writer thread is woken at once.
pub const WAKE_AT: usize = 256 * 1024;
/// Pending bytes at which logging waits for the writer thread (backpressure, no loss).
pub const CAP: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// The writer thread waits here for lines (or for `WAKE_AT`, or for the end).
    lines: Condvar,
    /// Loggers wait here while `CAP` bytes are pending.
    room: Condvar,
    cap: usize,
    wake_at: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves a valid byte buffer: keep using it.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A handle that appends whole writes to the shared buffer; cheap to clone.
#[derive(Clone)]
pub struct LogSink(Arc<Shared>);

/// Ends the writer thread when dropped, after it has written every pending line.
pub struct LogFlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogSink {
    /// The sink and its writer thread (named `vulngate-log`), writing to `out`.
    pub fn spawn<W: Write + Send + 'static>(out: W) -> std::io::Result<(LogSink, LogFlushGuard)> {
        Self::spawn_with(out, INTERVAL, WAKE_AT, CAP)
    }

    pub(crate) fn spawn_with<W: Write + Send + 'static>(
        mut out: W,
        interval: Duration,
        wake_at: usize,
        cap: usize,
    ) -> std::io::Result<(LogSink, LogFlushGuard)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            lines: Condvar::new(),
            room: Condvar::new(),
            cap,
            wake_at,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("vulngate-log".into())
            .spawn(move || {
                let mut batch: Vec<u8> = Vec::new();
                loop {
                    let mut p = s.lock();
                    while p.buf.is_empty() && !p.closed {
                        p = s.lines.wait(p).unwrap_or_else(|e| e.into_inner());
                    }
                    if p.buf.len() < s.wake_at && !p.closed {
                        // Gather: more lines come while we wait (woken early at `wake_at`).
                        p = s
                            .lines
                            .wait_timeout(p, interval)
                            .map(|(g, _)| g)
                            .unwrap_or_else(|e| e.into_inner().0);
                    }
                    std::mem::swap(&mut batch, &mut p.buf);
                    let closed = p.closed;
                    drop(p);
                    s.room.notify_all();
                    if !batch.is_empty() {
                        // A failing stderr (closed pipe) must not stop the server: the
                        // batch is dropped and logging goes on.
                        let _ = out.write_all(&batch).and_then(|()| out.flush());
                        batch.clear();
                        if batch.capacity() > 4 * s.wake_at {
                            batch.shrink_to(s.wake_at);
                        }
                    }
                    if closed && s.lock().buf.is_empty() {
                        return;
                    }
                }
            })?;
        Ok((
            LogSink(shared.clone()),
            LogFlushGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// Appends `line` (one whole write: never interleaved with another).
    pub fn append(&self, line: &[u8]) {
        let s = &self.0;
        let mut p = s.lock();
        while p.buf.len() >= s.cap && !p.closed {
            p = s.room.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        let before = p.buf.len();
        p.buf.extend_from_slice(line);
        let after = p.buf.len();
        drop(p);
        // Wake the writer thread only on the transitions it waits for.
        if before == 0 || (before < s.wake_at && after >= s.wake_at) {
            s.lines.notify_one();
        }
    }
}

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogSink;

    fn make_writer(&'a self) -> LogSink {
        self.clone()
    }
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSink").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LogFlushGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFlushGuard").finish_non_exhaustive()
    }
}

impl Drop for LogFlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.lines.notify_one();
        self.shared.room.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A `Write` into a shared vector, optionally slow.
    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<Vec<u8>>>, Duration);

    impl Write for Out {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.1);
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(out: &Out) -> Vec<String> {
        String::from_utf8(out.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Lines from several threads all arrive, whole, each thread's in its order; the guard
    /// writes what is pending.
    #[test]
    fn every_line_arrives_whole_and_in_order() {
        let out = Out::default();
        let (sink, guard) = LogSink::spawn_with(out.clone(), INTERVAL, 4096, 64 * 1024).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let sink = sink.clone();
                s.spawn(move || {
                    for i in 0..5000 {
                        sink.append(
                            format!(
                                "{{\"thread\":{t},\"n\":{i},\"pad\":\"{}\"}}\n",
                                "x".repeat(i % 97)
                            )
                            .as_bytes(),
                        );
                    }
                });
            }
        });
        drop(guard);
        let got = lines(&out);
        assert_eq!(got.len(), 20_000);
        let mut next = [0usize; 4];
        for l in &got {
            let v: serde_json::Value = serde_json::from_str(l).expect("a whole JSON line");
            let t = v["thread"].as_u64().unwrap() as usize;
            assert_eq!(
                v["n"].as_u64().unwrap() as usize,
                next[t],
                "thread {t} out of order"
            );
            next[t] += 1;
        }
    }

    /// A line is written without waiting for the guard: within the gathering interval.
    #[test]
    fn a_single_line_is_written_soon() {
        let out = Out::default();
        let (sink, _guard) = LogSink::spawn(out.clone()).unwrap();
        sink.append(b"one\n");
        let start = Instant::now();
        while lines(&out).is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "line never written"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(lines(&out), ["one"]);
    }

    /// With a slow output and a small cap, loggers wait instead of dropping lines.
    #[test]
    fn a_slow_output_slows_logging_down_and_loses_nothing() {
        let out = Out(Default::default(), Duration::from_millis(2));
        let (sink, guard) =
            LogSink::spawn_with(out.clone(), Duration::from_millis(1), 256, 1024).unwrap();
        for i in 0..2000 {
            sink.append(format!("line {i}\n").as_bytes());
        }
        drop(guard);
        let got = lines(&out);
        assert_eq!(got.len(), 2000);
        assert_eq!(got[1999], "line 1999");
    }

    /// `tracing-subscriber`'s JSON formatter writes each event as one whole line through it.
    #[test]
    fn tracing_events_go_through_the_sink() {
        let out = Out::default();
        let (sink, guard) = LogSink::spawn(out.clone()).unwrap();
        let subscriber = tracing_subscriber::fmt().json().with_writer(sink).finish();
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..100 {
                tracing::info!(i, "event");
            }
        });
        drop(guard);
        let got = lines(&out);
        assert_eq!(got.len(), 100);
        let v: serde_json::Value = serde_json::from_str(&got[99]).unwrap();
        assert_eq!(v["fields"]["i"], 99);
        assert_eq!(v["fields"]["message"], "event");
    }
}
