//! The alert journal: an append-only local file (`alerts.journal` in the data directory) for
//! the alerts the store could not take before the admission deadline. Each record is fsync'd
//! before the webhook answers, and replayed into the store later (at start and periodically,
//! by the writer task); the store ignores alert ids it already has, so a replay after a
//! partial success or a crash never duplicates an alert.
//!
//! Format: one record per line, `v1 <len> <sum> <json>\n`, where `<json>` is the alert (serde
//! JSON never contains a raw newline), `<len>` its length in bytes (decimal) and `<sum>` the
//! first 16 hex digits of its SHA-256. A line that does not parse, has the wrong length (a
//! torn write) or the wrong checksum is skipped with a warning naming its offset; the records
//! before and after it are replayed. A line cut short by a crash (no final newline) is closed
//! with a newline before the next append, so it never merges with a new record.
//!
//! Bounded: an append that would take the file past `max_bytes` is refused
//! ([`JournalError::Full`]); the caller then applies the failure policy.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::Alert;

/// File name of the journal in the data directory.
pub const JOURNAL_FILE: &str = "alerts.journal";
/// Longest journal line read back (an alert with its rule snapshot is a few KiB).
pub const MAX_RECORD_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("alert journal {path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "alert journal {path} is full ({size} of {max} bytes, alertWriter.journalMaxBytes): \
         the alert store has not taken the journaled alerts back yet"
    )]
    Full { path: String, size: u64, max: u64 },
    #[error("alert journal is disabled (alertWriter.journalMaxBytes: 0)")]
    Disabled,
    #[error("alert {id}: cannot encode: {message}")]
    Encode { id: String, message: String },
}

/// A journal record read back.
#[derive(Debug)]
pub struct Replayed {
    pub alerts: Vec<Alert>,
    /// Offset just past the last line read (what a compaction after storing them drops).
    pub end: u64,
    /// Lines skipped as corrupt or truncated.
    pub corrupt: u64,
}

#[derive(Debug)]
struct State {
    file: File,
    size: u64,
    records: u64,
    /// The file does not end with a newline (a torn write): close the line first.
    torn: bool,
}

/// The journal file (appends serialised by a lock; fsync'd per append).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

fn checksum(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// One encoded record line (with its newline).
pub fn encode(alert: &Alert) -> Result<Vec<u8>, JournalError> {
    let json = serde_json::to_vec(alert).map_err(|e| JournalError::Encode {
        id: alert.id.clone(),
        message: e.to_string(),
    })?;
    let mut line = format!("v1 {} {} ", json.len(), checksum(&json)).into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    Ok(line)
}

/// Decodes one line (without its newline); the error says what is wrong.
pub fn decode(line: &[u8]) -> Result<Alert, String> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let (Some(tag), Some(len), Some(sum), Some(json)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a journal record (expected `v1 <len> <sum> <json>`)".into());
    };
    if tag != b"v1" {
        return Err(format!(
            "unknown record version {:?}",
            String::from_utf8_lossy(&tag[..tag.len().min(16)])
        ));
    }
    let len: usize = std::str::from_utf8(len)
        .ok()
        .and_then(|l| l.parse().ok())
        .ok_or("unreadable length")?;
    if json.len() != len {
        return Err(format!(
            "truncated or torn record: {} bytes of {len}",
            json.len()
        ));
    }
    if sum != checksum(json).as_bytes() {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(json)
        .map_err(|e| format!("checksum matches but the alert does not parse: {e}"))
}

impl Journal {
    /// Opens (creating) the journal at `path`, bounded to `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Journal, JournalError> {
        let io = |op, source| JournalError::Io {
            path: path.display().to_string(),
            op,
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| io("open", e))?;
        let size = file.metadata().map_err(|e| io("stat", e))?.len();
        let mut torn = false;
        if size > 0 {
            file.seek(SeekFrom::Start(size - 1))
                .map_err(|e| io("seek", e))?;
            let mut last = [0u8; 1];
            file.read_exact(&mut last).map_err(|e| io("read", e))?;
            torn = last[0] != b'\n';
        }
        // Counts the lines (records, corrupt ones included) without holding them.
        let records = if size == 0 {
            0
        } else {
            file.seek(SeekFrom::Start(0)).map_err(|e| io("seek", e))?;
            let mut n = 0u64;
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let k = file.read(&mut buf).map_err(|e| io("read", e))?;
                if k == 0 {
                    break;
                }
                n += buf[..k].iter().filter(|b| **b == b'\n').count() as u64;
            }
            n + u64::from(torn)
        };
        Ok(Journal {
            path: path.to_path_buf(),
            max_bytes,
            state: Mutex::new(State {
                file,
                size,
                records,
                torn,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, op: &'static str, source: std::io::Error) -> JournalError {
        JournalError::Io {
            path: self.path.display().to_string(),
            op,
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state as consistent as an I/O error does.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Size in bytes and number of records (corrupt lines included) now in the journal.
    pub fn stats(&self) -> (u64, u64) {
        let s = self.lock();
        (s.size, s.records)
    }

    /// Appends `alerts` and fsyncs: when this returns Ok, they survive a crash.
    pub fn append(&self, alerts: &[Alert]) -> Result<(u64, u64), JournalError> {
        if self.max_bytes == 0 {
            return Err(JournalError::Disabled);
        }
        let mut buf = Vec::new();
        for a in alerts {
            buf.extend_from_slice(&encode(a)?);
        }
        let mut s = self.lock();
        if s.torn {
            buf.insert(0, b'\n');
        }
        if s.size + buf.len() as u64 > self.max_bytes {
            return Err(JournalError::Full {
                path: self.path.display().to_string(),
                size: s.size,
                max: self.max_bytes,
            });
        }
        if let Err(e) = s.file.write_all(&buf) {
            // Part of it may be on disk: resynchronise the size, close the line next time.
            s.torn = true;
            if let Ok(m) = s.file.metadata() {
                s.size = m.len();
            }
            return Err(self.io("write", e));
        }
        s.torn = false;
        s.size += buf.len() as u64;
        s.records += alerts.len() as u64;
        s.file.sync_data().map_err(|e| self.io("fsync", e))?;
        Ok((s.size, s.records))
    }

    /// Reads the records now in the journal (up to its current size). Corrupt and truncated
    /// lines are skipped with a warning.
    pub fn read_all(&self) -> Result<Replayed, JournalError> {
        let end = self.lock().size;
        let mut file = File::open(&self.path).map_err(|e| self.io("open", e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| self.io("seek", e))?;
        let mut reader = BufReader::new(file.take(end));
        let mut alerts = Vec::new();
        let mut corrupt = 0u64;
        let mut offset = 0u64;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = read_line(&mut reader, &mut line).map_err(|e| self.io("read", e))?;
            if n == 0 {
                break;
            }
            let start = offset;
            offset += n as u64;
            let complete = line.last() == Some(&b'\n');
            let body = if complete {
                &line[..line.len() - 1]
            } else {
                &line[..]
            };
            if body.is_empty() {
                continue; // the newline closing a torn line
            }
            if n > MAX_RECORD_BYTES {
                corrupt += 1;
                tracing::warn!(
                    journal = %self.path.display(), offset = start,
                    "alert journal: record longer than {MAX_RECORD_BYTES} bytes skipped"
                );
                continue;
            }
            let decoded = if complete {
                decode(body)
            } else {
                Err("truncated record at the end of the journal (no final newline)".into())
            };
            match decoded {
                Ok(a) => alerts.push(a),
                Err(why) => {
                    corrupt += 1;
                    tracing::warn!(
                        journal = %self.path.display(), offset = start, bytes = n,
                        "alert journal: corrupt record skipped: {why}"
                    );
                }
            }
        }
        Ok(Replayed {
            alerts,
            end: offset,
            corrupt,
        })
    }

    /// Drops the first `upto` bytes (records already in the store); keeps what was appended
    /// since. The rest is written to a new file, fsync'd and renamed over the journal.
    pub fn drop_prefix(&self, upto: u64) -> Result<(), JournalError> {
        let mut s = self.lock();
        let upto = upto.min(s.size);
        if upto == 0 {
            return Ok(());
        }
        if upto == s.size {
            s.file.set_len(0).map_err(|e| self.io("truncate", e))?;
            s.file.sync_all().map_err(|e| self.io("fsync", e))?;
            s.size = 0;
            s.records = 0;
            s.torn = false;
            return Ok(());
        }
        let mut rest = Vec::new();
        let mut f = File::open(&self.path).map_err(|e| self.io("open", e))?;
        f.seek(SeekFrom::Start(upto))
            .map_err(|e| self.io("seek", e))?;
        f.take(s.size - upto)
            .read_to_end(&mut rest)
            .map_err(|e| self.io("read", e))?;
        let tmp = self.path.with_extension("journal.tmp");
        {
            let mut t = File::create(&tmp).map_err(|e| self.io("create", e))?;
            t.write_all(&rest).map_err(|e| self.io("write", e))?;
            t.sync_all().map_err(|e| self.io("fsync", e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io("rename", e))?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        s.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.io("reopen", e))?;
        s.size = rest.len() as u64;
        s.records = rest.iter().filter(|b| **b == b'\n').count() as u64;
        s.torn = rest.last().is_some_and(|b| *b != b'\n');
        Ok(())
    }
}

/// `read_until(b'\n')` that stops holding bytes past MAX_RECORD_BYTES (it still consumes the
/// whole line and returns its full length).
fn read_line(r: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let (done, used) = {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                return Ok(total);
            }
            match buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    if out.len() < MAX_RECORD_BYTES {
                        out.extend_from_slice(&buf[..=i]);
                    } else {
                        out.push(b'\n');
                    }
                    (true, i + 1)
                }
                None => {
                    if out.len() < MAX_RECORD_BYTES {
                        out.extend_from_slice(buf);
                    }
                    (false, buf.len())
                }
            }
        };
        r.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal deny alert (also the writer's tests).
    pub(crate) fn alert(id: &str) -> Alert {
        serde_json::from_value(serde_json::json!({
            "id": id, "time": "2026-01-01T00:00:00Z", "action": "deny", "decision": "deny",
            "kind": "Pod", "operation": "CREATE", "requestUid": "u", "image": "x:1",
            "counts": serde_json::to_value(vulngate_core::engine::SeverityCounts::default()).unwrap(),
            "reason": "r", "dryRun": false
        }))
        .unwrap()
    }

    #[test]
    fn append_read_and_drop_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(JOURNAL_FILE);
        let j = Journal::open(&p, 1 << 20).unwrap();
        j.append(&[alert("a"), alert("b")]).unwrap();
        let first = j.read_all().unwrap();
        j.append(&[alert("c")]).unwrap();
        assert_eq!(first.alerts.len(), 2);
        assert_eq!(j.stats().1, 3);
        // Dropping what was read keeps what was appended since.
        j.drop_prefix(first.end).unwrap();
        let rest = j.read_all().unwrap();
        assert_eq!(
            rest.alerts
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>(),
            ["c"]
        );
        assert_eq!(j.stats().1, 1);
        drop(j);
        let j = Journal::open(&p, 1 << 20).unwrap();
        assert_eq!(j.stats(), (rest.end, 1));
    }

    #[test]
    fn a_torn_tail_never_merges_with_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(JOURNAL_FILE);
        let whole = encode(&alert("a")).unwrap();
        let torn = encode(&alert("b")).unwrap();
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&torn[..torn.len() - 5]);
        std::fs::write(&p, &bytes).unwrap();
        let j = Journal::open(&p, 1 << 20).unwrap();
        j.append(&[alert("c")]).unwrap();
        let r = j.read_all().unwrap();
        let ids: Vec<&str> = r.alerts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(r.corrupt, 1);
    }

    #[test]
    fn full_and_disabled_journals_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(JOURNAL_FILE);
        let one = encode(&alert("a")).unwrap().len() as u64;
        let j = Journal::open(&p, one).unwrap();
        j.append(&[alert("a")]).unwrap();
        let e = j.append(&[alert("b")]).unwrap_err();
        assert!(matches!(e, JournalError::Full { .. }), "{e}");
        assert!(e.to_string().contains("alertWriter.journalMaxBytes"), "{e}");
        let off = Journal::open(&dir.path().join("other"), 0).unwrap();
        assert!(matches!(
            off.append(&[alert("a")]),
            Err(JournalError::Disabled)
        ));
    }

    #[test]
    fn decode_names_what_is_wrong() {
        let line = encode(&alert("a")).unwrap();
        let body = &line[..line.len() - 1];
        assert!(decode(body).is_ok());
        assert!(decode(b"garbage")
            .unwrap_err()
            .contains("not a journal record"));
        assert!(decode(&body[..body.len() - 3])
            .unwrap_err()
            .contains("truncated"));
        let mut flipped = body.to_vec();
        let n = flipped.len();
        flipped[n - 2] ^= 1;
        assert!(decode(&flipped).unwrap_err().contains("checksum"));
    }
}
