//! Logging: the process-wide subscriber, whose filter can change while it runs, through
//! `PUT /v1/admin/log-filter` (cluster-admin) or SIGHUP (which re-reads the configuration's
//! `telemetry.log_filter`).

use std::sync::{Mutex, OnceLock};

use ragplane_config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Replaces the installed subscriber's filter.
type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// The installed subscriber's reload hook, and the filter in force.
static INSTALLED: OnceLock<(Reload, Mutex<String>)> = OnceLock::new();

/// Installs the subscriber: `format` on stderr, filtered by `filter` (EnvFilter syntax; `info`
/// when it does not parse). A second call changes nothing.
pub fn init(format: LogFormat, filter: &str) {
    let (parsed, text) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, filter.to_owned()),
        Err(_) => (EnvFilter::new("info"), "info".to_owned()),
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter_layer, handle) = tracing_subscriber::reload::Layer::new(parsed);
    let reload: Reload = Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()));
    // A log line that cannot be written (a full disk under a redirected stderr) is dropped.
    // With internal errors on, tracing-subscriber would report it with `eprintln!`, which
    // panics when stderr fails too, and take down whatever task was logging (a worker).
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let registry = tracing_subscriber::registry().with(filter_layer);
    let installed = match format {
        LogFormat::Json => registry.with(lines.json()).try_init(),
        LogFormat::Text => registry.with(lines).try_init(),
    };
    if installed.is_ok() {
        let _ = INSTALLED.set((reload, Mutex::new(text)));
    }
}

/// The filter in force; `None` before [`init`].
pub fn filter() -> Option<String> {
    INSTALLED
        .get()
        .map(|(_, f)| f.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

/// Why a filter could not be set.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The text is not EnvFilter syntax.
    #[error("not a log filter ({0}); use EnvFilter syntax such as \"info,ragplane=debug\"")]
    Invalid(String),
    /// No subscriber of this module is installed.
    #[error("logging was not set up by this process")]
    NotInstalled,
    /// The subscriber refused the new filter.
    #[error("the log filter could not be replaced: {0}")]
    Reload(String),
}

/// Replaces the filter in force with `filter`.
pub fn set_filter(filter: &str) -> Result<(), FilterError> {
    let parsed = EnvFilter::try_new(filter).map_err(|e| FilterError::Invalid(e.to_string()))?;
    let (reload, current) = INSTALLED.get().ok_or(FilterError::NotInstalled)?;
    reload(parsed).map_err(FilterError::Reload)?;
    *current.lock().unwrap_or_else(|e| e.into_inner()) = filter.to_owned();
    tracing::info!(filter, "log filter changed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_filter_is_refused_before_anything_changes() {
        let err = set_filter("ragplane=[loud").unwrap_err();
        assert!(matches!(err, FilterError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("EnvFilter syntax"), "{err}");
    }
}
