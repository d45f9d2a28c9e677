//! vulngate's pure core: the rule model, the findings parsers, VEX, and the engine that
//! decides allow / audit / deny for an image. No network IO, no async: everything here is a
//! deterministic function of its inputs (the only IO: capped reads of local files, `limits`).
#![forbid(unsafe_code)]

pub mod cel;
pub mod engine;
pub mod exploit;
pub mod findings;
pub mod image;
pub mod limits;
pub mod model;
pub mod owner;
pub mod rules;
pub mod vex;
pub mod workload;

pub use engine::{
    evaluate, evaluate_with, violations, AnalyzedReport, Decision, Outcome, RequestContext,
    Subject, UnscannedReason, Violation,
};
pub use exploit::{Catalogs, EpssScores, KevCatalog};
pub use image::ImageRef;
pub use model::{Finding, FindingsReport, Severity};
pub use rules::{Action, Precedence, Rule, RuleSet};
