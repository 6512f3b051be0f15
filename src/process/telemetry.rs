//! Logging: structured `tracing` events to stderr, as text for people or JSON for log pipelines.

use tracing_subscriber::EnvFilter;

/// The log formats the operator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. `level` is a `tracing` filter such as `info` or
/// `info,ppio_gpu_operator=debug,ppio=debug`; an invalid filter falls back to `info` and says so.
pub fn init(format: LogFormat, level: &str) {
    let (filter, invalid) = match EnvFilter::try_new(level) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
    if let Some(e) = invalid {
        tracing::warn!(error = %e, "invalid log level filter; using info");
    }
}
