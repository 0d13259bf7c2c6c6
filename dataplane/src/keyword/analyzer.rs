//! The one text analyzer of keyword search: Unicode word segmentation (UAX #29), lower-casing,
//! English stop words, and the Snowball English (Porter2) stemmer.
//!
//! Documents and queries pass through the same analyzer, and every backend indexes the terms it
//! produces, so document frequencies and scores agree across backends. The stop words are
//! Lucene's English set, the one behind the published BM25 baselines of BEIR.

use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};
use unicode_segmentation::UnicodeSegmentation;

/// Words dropped before stemming: Lucene's `EnglishAnalyzer` default stop set.
pub const STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// Words longer than this many characters (hashes, base64, run-together junk) are not indexed.
pub const MAX_TERM_CHARS: usize = 40;

/// Turns text into index terms.
pub struct Analyzer {
    stemmer: Stemmer,
}

static ENGLISH: LazyLock<Analyzer> = LazyLock::new(|| Analyzer {
    stemmer: Stemmer::create(Algorithm::English),
});

/// The English analyzer, shared by every keyword index and query.
pub fn english() -> &'static Analyzer {
    &ENGLISH
}

impl Analyzer {
    /// Every term of `text`, in order and with repeats (term frequencies count them).
    pub fn terms(&self, text: &str) -> Vec<String> {
        text.unicode_words()
            .filter_map(|word| {
                let lower = word.to_lowercase();
                if lower.chars().count() > MAX_TERM_CHARS || STOP_WORDS.contains(&lower.as_str()) {
                    return None;
                }
                let stem = self.stemmer.stem(&lower).into_owned();
                (!stem.is_empty()).then_some(stem)
            })
            .collect()
    }

    /// The distinct terms of a query, in first-seen order.
    pub fn query_terms(&self, text: &str) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.terms(text)
            .into_iter()
            .filter(|t| seen.insert(t.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_cases_drops_stop_words_and_stems() {
        let terms = english().terms("The Running of the BULLS is running, and runners ran.");
        assert_eq!(terms, ["run", "bull", "run", "runner", "ran"]);
    }

    #[test]
    fn splits_on_unicode_word_boundaries() {
        assert_eq!(
            english().terms("COVID-19 vaccines: mRNA-1273 (Moderna); naïve T-cells"),
            ["covid", "19", "vaccin", "mrna", "1273", "moderna", "naïv", "t", "cell"]
        );
        assert_eq!(english().terms("Größe straße"), ["größe", "straße"]);
        assert!(english().terms("... --- !!!").is_empty());
    }

    #[test]
    fn possessives_and_plurals_meet_their_stems() {
        let a = english().terms("the patient's diets");
        let b = english().terms("patients diet");
        assert_eq!(a, b);
    }

    #[test]
    fn overlong_words_are_not_indexed() {
        let long = "x".repeat(MAX_TERM_CHARS + 1);
        assert_eq!(english().terms(&format!("keep {long} this")), ["keep"]);
    }

    #[test]
    fn query_terms_are_distinct_in_order() {
        assert_eq!(
            english().query_terms("diet and diets: vitamin D diet"),
            ["diet", "vitamin", "d"]
        );
    }
}
