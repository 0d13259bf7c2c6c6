//! Model identity: which embedding model a collection's vectors come from.
//!
//! A collection records the model's name and a probe: the model's embedding of a fixed
//! sentence, stored quantised to 8 bits. Two models are the same model when their probes agree
//! (cosine similarity at least [`SAME_MODEL_COSINE`]); the name alone cannot tell a quantised
//! model from its original, or a re-trained model from the one it replaced, and the probe works
//! the same for in-process, remote and Ollama embedders. The tolerance absorbs the rounding
//! differences between CPU and GPU runs of one model, which are orders of magnitude smaller
//! than the difference between two models.

use base64::Engine;
use sha2::{Digest, Sha256};

/// The sentence every model embeds for its probe.
pub const PROBE_TEXT: &str =
    "ragplane model fingerprint: the quick brown fox jumps over the lazy dog near the riverbank.";

/// Probes at least this similar come from the same model.
pub const SAME_MODEL_COSINE: f32 = 0.99;

/// A model's name and probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelIdentity {
    /// The model's configured name.
    pub name: String,
    /// The probe, encoded as stored (see [`encode_probe`]).
    pub probe: String,
    /// The stored probe decoded, so that each check decodes only the recorded one.
    decoded: Vec<f32>,
    /// Whether the probe matches itself (it does unless it is empty or all zeros); a recorded
    /// probe equal to this one needs no decoding.
    matches_itself: bool,
}

impl ModelIdentity {
    /// The identity of the model `embedder` runs: its name and its embedding of
    /// [`PROBE_TEXT`].
    pub async fn probe(embedder: &dyn super::Embedder) -> super::Result<Self> {
        let probe = embedder.embed_one(PROBE_TEXT).await?;
        Ok(Self::new(embedder.model(), &probe))
    }

    /// The identity of a model whose embedding of [`PROBE_TEXT`] is `probe`.
    pub fn new(name: &str, probe: &[f32]) -> Self {
        let probe = encode_probe(probe);
        let decoded = decode_probe(&probe).unwrap_or_default();
        Self {
            name: name.to_string(),
            matches_itself: cosine(&decoded, &decoded) >= SAME_MODEL_COSINE,
            decoded,
            probe,
        }
    }

    /// A short, stable label of the probe, for people and logs.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.probe)
    }

    /// Whether a recorded probe comes from this model.
    pub fn matches(&self, recorded_probe: &str) -> bool {
        // The common case, checked on every search and upload: the probe recorded by this
        // very model, byte for byte.
        if recorded_probe == self.probe {
            return self.matches_itself;
        }
        match decode_probe(recorded_probe) {
            Some(b) if b.len() == self.decoded.len() => {
                cosine(&self.decoded, &b) >= SAME_MODEL_COSINE
            }
            _ => false,
        }
    }
}

/// A short label of an encoded probe: the first 12 hex digits of its SHA-256.
pub fn fingerprint(probe: &str) -> String {
    hex::encode(Sha256::digest(probe.as_bytes()))[..12].to_string()
}

/// The probe scaled so its largest component is ±127, as signed bytes, in base64.
pub fn encode_probe(v: &[f32]) -> String {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { 127.0 / max } else { 0.0 };
    let bytes: Vec<u8> = v
        .iter()
        .map(|x| (x * scale).round().clamp(-127.0, 127.0) as i8 as u8)
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The components of an encoded probe (up to scale), or `None` when it is not one.
pub fn decode_probe(s: &str) -> Option<Vec<f32>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    (!bytes.is_empty()).then(|| bytes.iter().map(|b| *b as i8 as f32).collect())
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(phase: f32, n: usize) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37 + phase).sin()).collect()
    }

    #[test]
    fn the_same_model_matches_through_rounding_noise() {
        let v = wave(0.0, 384);
        let noisy: Vec<f32> = v
            .iter()
            .enumerate()
            .map(|(i, x)| x + 1e-3 * ((i % 7) as f32 - 3.0))
            .collect();
        let a = ModelIdentity::new("m", &v);
        assert!(a.matches(&encode_probe(&noisy)));
        assert!(a.matches(&a.probe));
        assert_eq!(a.fingerprint().len(), 12);
    }

    #[test]
    fn another_model_or_dimension_does_not_match() {
        let a = ModelIdentity::new("m", &wave(0.0, 384));
        assert!(!a.matches(&encode_probe(&wave(1.5, 384))));
        assert!(!a.matches(&encode_probe(&wave(0.0, 768))));
        assert!(!a.matches("not base64 at all!"));
        assert!(!a.matches(""));
    }

    #[test]
    fn a_probe_of_zeros_matches_nothing_not_even_itself() {
        let zero = ModelIdentity::new("m", &[0.0; 384]);
        assert!(!zero.matches(&zero.probe));
        assert!(!ModelIdentity::new("m", &wave(0.0, 384)).matches(&zero.probe));
    }

    #[test]
    fn probes_round_trip_within_quantisation() {
        let v = wave(0.3, 384);
        let back = decode_probe(&encode_probe(&v)).unwrap();
        assert!(cosine(&v, &back) > 0.9999);
    }
}
