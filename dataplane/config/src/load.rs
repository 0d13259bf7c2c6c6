//! Loading the layered configuration (feature `load`): the built-in defaults at the bottom,
//! then whatever layers the caller stacks (a TOML file, `RAGPLANE__*` variables).
//!
//! A section that selects a backend by a tag (`metadata.backend = "postgres"`) takes its
//! defaults from that backend only: the default backend's settings would be unknown fields of
//! the chosen one.

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;

use crate::Config;

/// Sections that select a backend by a tag, and the tag's name.
const TAGGED_SECTIONS: &[(&str, &str)] = &[
    ("metadata", "backend"),
    ("objects", "backend"),
    ("vectors", "backend"),
    ("queue", "backend"),
    ("generation", "provider"),
];

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The built-in defaults could not be laid down (a bug).
    #[error("failed to lay down the defaults: {0}")]
    Defaults(#[from] serde_json::Error),
    /// A layer has a bad value or an unknown key; the message names where.
    #[error("{0}")]
    Layers(#[from] Box<figment::Error>),
}

/// The configuration from `user`'s layers over the built-in defaults.
pub fn from_layers(user: Figment) -> Result<Config, LoadError> {
    let mut defaults = serde_json::to_value(Config::default())?;
    if let Some(sections) = defaults.as_object_mut() {
        for (section, tag) in TAGGED_SECTIONS {
            if user.find_value(&format!("{section}.{tag}")).is_ok() {
                sections.remove(*section);
            }
        }
    }
    Figment::from(Serialized::defaults(defaults))
        .merge(user)
        .extract()
        .map_err(|e| LoadError::Layers(Box::new(e)))
}

/// The configuration from one TOML document over the defaults.
pub fn from_toml(toml: &str) -> Result<Config, LoadError> {
    from_layers(Figment::from(Toml::string(toml)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_backend_drops_the_default_backends_settings() {
        let c =
            from_toml("[queue]\nbackend = \"redis\"\n[chunking]\nchunk_tokens = 100\n").unwrap();
        assert!(matches!(c.queue, crate::QueueConfig::Redis(_)));
        assert_eq!(c.chunking.chunk_tokens, 100);
        assert_eq!(c.chunking.overlap_tokens, 40);
        let err = from_toml("[chunking]\nchunk_token = 100\n").unwrap_err();
        assert!(err.to_string().contains("chunk_token"), "{err}");
    }
}
