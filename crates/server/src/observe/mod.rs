//! Observability: Prometheus metrics ([`metrics`]), log set-up and the decision log line
//! ([`log`]), and the batching log writer behind them ([`sink`]).

pub mod log;
pub mod metrics;
pub mod sink;
