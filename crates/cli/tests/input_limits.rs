//! Issue 17 item 15: every file vulngate reads is capped. A FIFO fed from /dev/zero given as
//! `check --report` stops at the cap with exit 2 and a message naming the cap and the knob.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};

#[test]
fn report_fifo_from_dev_zero_stops_at_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("report.json");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    // The writer: /dev/zero into the FIFO until the reader closes it.
    let mut feeder = Command::new("sh")
        .arg("-c")
        .arg(format!("exec cat /dev/zero > '{}'", fifo.display()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vulngate"))
        .args(["check", "--image", "ghcr.io/acme/app:v1", "--report"])
        .arg(&fifo)
        .env("VULNGATE_MAX_REPORT_BYTES", "1048576")
        .output()
        .unwrap();
    let _ = feeder.kill();
    let _ = feeder.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("cap of 1 MiB") && stderr.contains("VULNGATE_MAX_REPORT_BYTES"),
        "{stderr}"
    );
    // The default cap is named when the knob is unset; a bad knob is an error, not ignored.
    let bad = Command::new(env!("CARGO_BIN_EXE_vulngate"))
        .args([
            "check",
            "--image",
            "ghcr.io/acme/app:v1",
            "--report",
            "/dev/null",
        ])
        .env("VULNGATE_MAX_REPORT_BYTES", "lots")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{e}");
    assert!(e.contains("VULNGATE_MAX_REPORT_BYTES"), "{e}");
}
