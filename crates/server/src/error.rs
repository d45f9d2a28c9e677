//! Server errors. They never reach an AdmissionResponse: the handler maps them to fixed,
//! generic messages and logs the detail.

/// An error starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration {location}: {message}")]
    Config { location: String, message: String },
    #[error("rules: {0}")]
    Rules(#[from] vulngate_core::rules::RuleError),
    #[error("findings: {0}")]
    Findings(String),
    #[error("registry: {0}")]
    Registry(#[from] vulngate_registry::Error),
    #[error("alert store: {0}")]
    AlertStore(#[from] crate::alerts::AlertError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
