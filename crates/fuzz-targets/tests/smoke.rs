//! The fuzz smoke of the test command: every fuzz target (`vulngate_fuzz_targets::TARGETS`, the
//! same functions `scripts/fuzz.sh` runs under libFuzzer) on its seeds from the repository's
//! fixtures and on a fixed number of mutations of them (bit flips, JSON punctuation, huge and
//! negative numbers, cut, repeated and swapped ranges), generated from a fixed seed so a failure
//! reproduces. No coverage guidance: this keeps the targets building and catches what a short
//! run finds; the recorded fuzzing is `scripts/fuzz.sh 600` (docs/reliability.md).
//!
//! A panicking input is written to `target/fuzz-smoke/TARGET-N` (reproduce with
//! `cargo +nightly fuzz run -s none TARGET FILE` in `fuzz/`) and the test fails naming it.

use std::path::{Path, PathBuf};

use vulngate_fuzz_targets::TARGETS;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// Inputs per target, seeds included.
const INPUTS_PER_TARGET: usize = 300;

fn files_under(dir: &str, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(format!("{ROOT}/{dir}"))];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for e in entries {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if keep(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn read(paths: &[PathBuf]) -> Vec<Vec<u8>> {
    paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

fn ext(p: &Path, exts: &[&str]) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.contains(&e))
}

fn name_has(p: &Path, parts: &[&str]) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    parts.iter().any(|x| name.contains(x))
}

/// Admission reviews of every kind the webhook reads, from the example review.
fn reviews() -> Vec<Vec<u8>> {
    let example = std::fs::read_to_string(format!("{ROOT}/examples/admission-review.json"))
        .expect("examples/admission-review.json");
    let mut out = vec![example.clone().into_bytes()];
    for (from, to) in [
        ("\"CREATE\"", "\"UPDATE\""),
        ("\"Deployment\"", "\"CronJob\""),
        ("\"Deployment\"", "\"Pod\""),
        ("\"dryRun\": false", "\"dryRun\": true"),
        ("\"containers\"", "\"initContainers\""),
    ] {
        out.push(example.replacen(from, to, 1).into_bytes());
    }
    out
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let reports = || {
        let mut f = files_under("crates/core/tests/data/reports", &|p| {
            ext(p, &["json", "sarif"])
        });
        f.extend(files_under("examples/findings", &|p| {
            ext(p, &["json", "sarif"])
        }));
        f
    };
    let manifests = "crates/registry/tests/data/manifests";
    let mut seeds = match target {
        "admission_review" => reviews(),
        "findings_index" => {
            vec![
                b"images:\n  - image: registry.example.com/platform/toolbox:2.1.0\n    report: report.json\n    vex: [vex.json]\n  - image: nginx:1.25\n    report: grype.sarif\n".to_vec(),
                b"registry.example.com/platform/toolbox:2.1.0: report.json\n".to_vec(),
            ]
        }
        "rules_yaml" => read(&[
            PathBuf::from(format!("{ROOT}/examples/rules.yaml")),
            PathBuf::from(format!("{ROOT}/examples/exploitation/rules.yaml")),
            PathBuf::from(format!("{ROOT}/crates/core/tests/data/engine/cases.yaml")),
        ]),
        "oci_manifest" => read(&files_under(manifests, &|p| {
            ext(p, &["json"]) && !name_has(p, &["trustpolicy"])
        })),
        "notation_jws" => read(&files_under(manifests, &|p| name_has(p, &["notation"]))),
        "cosign_envelopes" => read(&files_under(manifests, &|p| name_has(p, &["cosign"]))),
        t if t.starts_with("report_") => read(&reports()),
        other => panic!("no seeds for target {other}: add them here and in scripts/fuzz.sh"),
    };
    assert!(!seeds.is_empty(), "{target}: no seed files found");
    // Inputs that crashed the target in a recorded fuzz run, kept once fixed (regressions).
    let found = format!("fuzz/regressions/{target}");
    if Path::new(ROOT).join(&found).is_dir() {
        seeds.extend(read(&files_under(&found, &|p| {
            name_has(p, &["crash-", "timeout-", "oom-"])
        })));
    }
    seeds
}

/// xorshift64: a fixed sequence, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

const PUNCTUATION: &[u8] = b"\"{}[],:0-9e\\ \n\x00\xff";
const TOKENS: &[&[u8]] = &[
    b"99999999999999999999999",
    b"-1",
    b"1e999",
    b"null",
    b"\"\\ud800\"",
    b"[[[[[[[[[[[[[[[[",
    b"{\"a\":",
    b"sha256:",
    b"\xe2\x80\xae",
];

fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(3) {
        let len = v.len();
        let at = rng.below(len + 1);
        match rng.below(7) {
            0 if len > 0 => v[at.min(len - 1)] ^= 1 << rng.below(8),
            1 if len > 0 => v[at.min(len - 1)] = PUNCTUATION[rng.below(PUNCTUATION.len())],
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            3 => v.truncate(at),
            4 if len > 0 => {
                let end = (at + 1 + rng.below(64)).min(len);
                v.drain(at.min(len - 1)..end);
            }
            5 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(256)).min(len);
                let chunk = v[start..end].to_vec();
                v.splice(at..at, chunk);
            }
            _ if len > 1 => {
                let (a, b) = (rng.below(len), rng.below(len));
                v.swap(a, b);
            }
            _ => v.push(PUNCTUATION[rng.below(PUNCTUATION.len())]),
        }
    }
    v
}

#[test]
fn every_fuzz_target_survives_its_seeds_and_their_mutations() {
    let failures_dir = PathBuf::from(format!("{ROOT}/target/fuzz-smoke"));
    let mut failures = Vec::new();
    for (name, run) in TARGETS {
        let seeds = seeds(name);
        let mut rng = Rng(0x5eed_0000_0000_0001 ^ name.len() as u64);
        let mut inputs = seeds.clone();
        while inputs.len() < INPUTS_PER_TARGET {
            // Mutate a seed, or (one time in four) an earlier mutant: deeper changes.
            let from = if rng.below(4) == 0 {
                &inputs[rng.below(inputs.len())]
            } else {
                &seeds[rng.below(seeds.len())]
            };
            let m = mutate(from, &mut rng);
            inputs.push(m);
        }
        let before = failures.len();
        for (i, input) in inputs.iter().enumerate() {
            let result = std::panic::catch_unwind(|| run(input));
            if result.is_err() {
                std::fs::create_dir_all(&failures_dir).expect("target/fuzz-smoke");
                let file = failures_dir.join(format!("{name}-{i}"));
                std::fs::write(&file, input).expect("failing input written");
                failures.push(format!("{name}: input {i} panicked ({})", file.display()));
            }
        }
        eprintln!(
            "{name}: {} inputs ({} seeds), {} panicked",
            inputs.len(),
            seeds.len(),
            failures.len() - before
        );
    }
    assert!(
        failures.is_empty(),
        "fuzz targets panicked:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_cargo_fuzz_target_is_smoked() {
    // The cargo-fuzz binaries of fuzz/Cargo.toml are exactly the targets smoked here.
    let manifest =
        std::fs::read_to_string(format!("{ROOT}/fuzz/Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "vulngate-fuzz")
        .collect();
    bins.sort_unstable();
    let mut smoked: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    smoked.sort_unstable();
    assert_eq!(bins, smoked);
}
