//! Capped file reads: every file vulngate reads (reports, VEX, rules, findings index,
//! configuration, manifests) goes through [`read_capped`], which reads through
//! `Read::take(cap + 1)` so that a FIFO fed from `/dev/zero` or a huge file stops at the cap
//! with an error naming the cap and the knob that raises it.
//!
//! The knobs are environment variables, so the CLI and the server share them: one read of
//! the environment per file read, no other IO than the file itself.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Default cap of findings reports, VEX documents and Kubernetes manifests (64 MiB).
pub const DEFAULT_REPORT_BYTES: u64 = 64 << 20;
/// Default cap of rule files, the findings index and configuration files (8 MiB).
pub const DEFAULT_CONFIG_BYTES: u64 = 8 << 20;

/// Which kind of file is read: decides the cap and the knob named in the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Findings reports, VEX documents, manifests: `VULNGATE_MAX_REPORT_BYTES`.
    Report,
    /// Rules, findings index, vulngate.yaml, credentials files: `VULNGATE_MAX_CONFIG_BYTES`.
    Config,
}

impl FileKind {
    /// The environment variable that raises (or lowers) the cap.
    pub fn knob(self) -> &'static str {
        match self {
            FileKind::Report => "VULNGATE_MAX_REPORT_BYTES",
            FileKind::Config => "VULNGATE_MAX_CONFIG_BYTES",
        }
    }

    pub fn default_cap(self) -> u64 {
        match self {
            FileKind::Report => DEFAULT_REPORT_BYTES,
            FileKind::Config => DEFAULT_CONFIG_BYTES,
        }
    }

    /// The cap in force: the knob when set to a positive byte count, else the default.
    /// A knob that is set but not a positive number is an error (never silently ignored).
    pub fn cap(self) -> Result<u64, ReadError> {
        match std::env::var(self.knob()) {
            Ok(v) => match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(ReadError::BadKnob {
                    knob: self.knob(),
                    value: v.chars().take(40).collect(),
                }),
            },
            Err(_) => Ok(self.default_cap()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is larger than the cap of {} ({cap} bytes); raise it with the environment variable {knob}=BYTES",
        path.display(),
        human(*cap)
    )]
    TooLarge {
        path: PathBuf,
        cap: u64,
        knob: &'static str,
    },
    #[error("{} is not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{knob}={value:?} is not a positive number of bytes")]
    BadKnob { knob: &'static str, value: String },
}

/// `67108864` -> `64 MiB`; byte counts that are not whole KiB/MiB are shown as bytes.
pub fn human(n: u64) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// Reads at most `cap` bytes from `r`; more is [`ReadError::TooLarge`] (`path` names the source).
pub fn read_capped_from(
    r: impl Read,
    path: &Path,
    cap: u64,
    knob: &'static str,
) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::new();
    r.take(cap.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if buf.len() as u64 > cap {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            cap,
            knob,
        });
    }
    Ok(buf)
}

/// Reads the file at `path`, capped by the knob of `kind`.
pub fn read_capped(path: &Path, kind: FileKind) -> Result<Vec<u8>, ReadError> {
    let cap = kind.cap()?;
    let f = std::fs::File::open(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_capped_from(f, path, cap, kind.knob())
}

/// [`read_capped`] as UTF-8 text.
pub fn read_to_string_capped(path: &Path, kind: FileKind) -> Result<String, ReadError> {
    String::from_utf8(read_capped(path, kind)?).map_err(|_| ReadError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_cap() {
        let p = Path::new("zero");
        let got = read_capped_from(std::io::repeat(0), p, 1000, "K").unwrap_err();
        let msg = got.to_string();
        assert!(
            msg.contains("cap of 1000 bytes") && msg.contains("K=BYTES"),
            "{msg}"
        );
        let ok = read_capped_from(&[1u8; 1000][..], p, 1000, "K").unwrap();
        assert_eq!(ok.len(), 1000);
        assert_eq!(human(64 << 20), "64 MiB");
        assert_eq!(human(8 << 10), "8 KiB");
    }
}
