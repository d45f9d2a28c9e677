//! `vulngate`: gate Kubernetes workloads on their images' vulnerability findings.
//!
//! Exit codes: 0 allowed (or nothing to report), 1 denied (or audited with `--fail-on audit`;
//! `rules lint`: warnings; `attach`: the registry failed), 2 bad input (flags, rules, manifests,
//! reports, configuration). A registry problem during `check` is never exit 2: the image is
//! unscanned, with the reason, and the rules decide.
//!
//! Each command's clap arguments live beside its code (`check::Args`, `install::Args`...);
//! this file only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// mimalloc: fewer cycles per request than glibc malloc on the webhook's warm path (measured in
// docs/benchmarks.md), small and built from its bundled C sources.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod alerts;
mod attach;
mod check;
mod install;
mod lint;
mod parse;
mod serve;
mod text;

#[derive(Debug, Parser)]
#[command(
    name = "vulngate",
    version,
    about = "Gate Kubernetes workloads on their container images' vulnerability findings",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the admission webhook (HTTPS): on --config, or on embedded defaults
    /// (127.0.0.1:8443, self-signed TLS, SQLite alerts in ./vulngate-data, the default rule).
    Serve(serve::Args),
    /// List and show the alerts the webhook recorded for review.
    Alerts {
        #[command(subcommand)]
        command: alerts::Command,
    },
    /// Evaluate images (or the images of Kubernetes manifests) against security rules.
    Check(check::Args),
    /// Push a findings report to an image's registry as a referrer of the image (OCI 1.1), where
    /// `vulngate check` and the webhook find it.
    Attach(attach::Args),
    /// Print everything a cluster needs as multi-document YAML
    /// (`vulngate install | kubectl apply -f -`), or write it as a kustomize base.
    Install(Box<install::Args>),
    /// Work with rule sets.
    Rules {
        #[command(subcommand)]
        command: lint::RulesCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse(); // flag errors: clap prints them and exits 2
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Alerts { command } => alerts::run(command),
        Command::Check(args) => check::run(args),
        Command::Attach(args) => attach::run(args),
        Command::Install(args) => install::run(*args),
        Command::Rules {
            command: lint::RulesCommand::Lint(args),
        } => lint::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole cause chain: `context: cause: root cause`. Messages carry
            // file names, references and registry answers: control characters are escaped.
            anstream::eprintln!("error: {}", text::escape_lines(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}
