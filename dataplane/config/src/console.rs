//! `[console]`: the web console served at `/ui`: whether it is on, how long a sign-in lasts,
//! how its cookie is marked, and how usage figures are kept.

use serde::{Deserialize, Serialize};

use crate::validate::Checker;

/// The web console.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serves the console at `/ui`. Usage is recorded either way.
    pub enabled: bool,
    /// Minutes a sign-in lasts (5 to 43200); the session cookie expires with it.
    pub session_minutes: u64,
    /// Marks the session cookie `Secure`. Unset: secure unless the request's host is loopback
    /// (`localhost`, `127.0.0.1`, `[::1]`), so that plain-HTTP access from elsewhere cannot sign
    /// in. Set `false` only behind a proxy that cannot forward TLS.
    pub secure_cookie: Option<bool>,
    /// Seconds between writes of the usage counters to the metadata store (1 to 3600).
    pub usage_flush_secs: u64,
    /// Hours of per-minute usage kept (24 to 2160).
    pub usage_retention_hours: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_minutes: 720,
            secure_cookie: None,
            usage_flush_secs: 10,
            usage_retention_hours: 48,
        }
    }
}

impl ConsoleConfig {
    pub(crate) fn validate(&self, c: &mut Checker) {
        c.check(
            (5..=43_200).contains(&self.session_minutes),
            "console.session_minutes",
            "must be between 5 and 43200",
        );
        c.check(
            (1..=3600).contains(&self.usage_flush_secs),
            "console.usage_flush_secs",
            "must be between 1 and 3600",
        );
        c.check(
            (24..=2160).contains(&self.usage_retention_hours),
            "console.usage_retention_hours",
            "must be between 24 and 2160",
        );
    }
}
