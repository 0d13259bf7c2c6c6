//! A string that never shows up in `Debug` output or logs.

use serde::{Deserialize, Serialize};

/// A secret value (API key, password). `Debug` prints `"<redacted>"`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A new random API key: `rp_` and 40 alphanumerics. The data plane issues keys in this form,
/// and the operator creates a cluster's first admin key with it.
pub fn new_api_key() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("rp_{}", Alphanumeric.sample_string(&mut rand::rng(), 40))
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}
