//! The findings index (`index.yaml` of a findings directory, read by
//! `LocalFindings::from_dir` for `vulngate serve --findings-dir`): the fuzz input is the
//! index; the directory holds a small Trivy report and an OpenVEX document for it to name.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vulngate_server::LocalFindings;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let t = tempfile::tempdir().expect("temp dir");
        let p = t.path().to_path_buf();
        let files: [(&str, &[u8]); 3] = [
            (
                "report.json",
                include_bytes!(
                    "../../examples/findings/registry.example.com_platform_toolbox_2.1.0.json"
                ),
            ),
            (
                "vex.json",
                include_bytes!("../../crates/core/tests/data/reports/trivy/openvex.json"),
            ),
            (
                "grype.sarif",
                include_bytes!("../../crates/core/tests/data/reports/grype/image.sarif"),
            ),
        ];
        for (name, bytes) in files {
            std::fs::write(p.join(name), bytes).expect("fixture written");
        }
        (t, p)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    std::fs::write(dir.join("index.yaml"), data).expect("index written");
    let _ = LocalFindings::from_dir(dir);
});
