//! BM25 as sparse vectors, for backends that score keyword search on their own server.
//!
//! A term becomes a dimension: the first four bytes of its SHA-256, so every process and
//! every release maps a term to the same dimension without a shared dictionary. A chunk's
//! vector holds, per term, the saturated, length-normalised weight [`Bm25::weight`]; the query
//! vector holds 1 per distinct query term. A server that multiplies each query dimension by the
//! term's inverse document frequency (Qdrant's IDF modifier, over the tenant's collection) then
//! computes exactly the BM25 score of the other backends, except that a chunk's length is
//! normalised against a configured average rather than the live one.
//!
//! Two terms whose hashes collide share a dimension; with 2³² dimensions that is about one
//! pair in a vocabulary of 65,000 terms, and only costs those two terms their distinction.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::Bm25;

/// A sparse vector: dimensions in increasing order, and their values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVector {
    /// Dimensions, increasing, without repeats.
    pub indices: Vec<u32>,
    /// One value per dimension.
    pub values: Vec<f32>,
}

/// The dimension of an analysed term.
pub fn dimension(term: &str) -> u32 {
    let digest = Sha256::digest(term.as_bytes());
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The vector of a chunk whose analysed terms (repeats included) are `terms`.
pub fn document(terms: &[String], bm25: Bm25, average_terms: f32) -> SparseVector {
    let mut tf: BTreeMap<&str, u32> = BTreeMap::new();
    for t in terms {
        *tf.entry(t.as_str()).or_default() += 1;
    }
    let len = u32::try_from(terms.len()).unwrap_or(u32::MAX);
    collect(
        tf.into_iter()
            .map(|(term, n)| (dimension(term), bm25.weight(n, len, average_terms))),
    )
}

/// The vector of a query whose distinct analysed terms are `terms`.
pub fn query(terms: &[String]) -> SparseVector {
    collect(terms.iter().map(|t| (dimension(t), 1.0)))
}

/// Sorts by dimension; a collision adds the values up.
fn collect(entries: impl Iterator<Item = (u32, f32)>) -> SparseVector {
    let mut merged: BTreeMap<u32, f32> = BTreeMap::new();
    for (d, v) in entries {
        *merged.entry(d).or_default() += v;
    }
    let (indices, values) = merged.into_iter().unzip();
    SparseVector { indices, values }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyword::english;

    #[test]
    fn a_chunk_vector_holds_the_bm25_weight_of_each_distinct_term() {
        let terms = english().terms("Zebras and zebras graze; the zebra grazes grass");
        // "zebra" ×3, "graze" ×2, "grass" ×1 after stemming and stop words.
        assert_eq!(terms.len(), 6, "{terms:?}");
        let v = document(&terms, Bm25::default(), 4.0);
        assert_eq!(v.indices.len(), 3);
        assert!(v.indices.windows(2).all(|w| w[0] < w[1]));
        let at = |term: &str| {
            let i = v
                .indices
                .iter()
                .position(|&d| d == dimension(term))
                .unwrap();
            v.values[i]
        };
        assert!((at("zebra") - Bm25::default().weight(3, 6, 4.0)).abs() < 1e-6);
        assert!((at("graze") - Bm25::default().weight(2, 6, 4.0)).abs() < 1e-6);
        assert!(at("zebra") > at("graze") && at("graze") > at("grass"));
    }

    #[test]
    fn dimensions_are_stable_and_a_query_weighs_each_term_once() {
        // Fixed for all time: stored vectors depend on it.
        assert_eq!(dimension("zebra"), dimension("zebra"));
        assert_ne!(dimension("zebra"), dimension("zebras"));
        let sha = Sha256::digest(b"zebra");
        assert_eq!(
            dimension("zebra"),
            u32::from_le_bytes([sha[0], sha[1], sha[2], sha[3]])
        );
        let q = query(&english().query_terms("zebra zebras savanna"));
        assert_eq!(q.values, vec![1.0, 1.0]);
        assert!(query(&[]).indices.is_empty());
    }
}
