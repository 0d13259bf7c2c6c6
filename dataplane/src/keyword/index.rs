//! An in-memory BM25 inverted index over one collection's chunks.
//!
//! Scores follow Okapi BM25 with the IDF of Lucene and Qdrant,
//! `ln(1 + (N − df + 0.5) / (df + 0.5))`, and term-frequency saturation
//! `tf·(k1 + 1) / (tf + k1·(1 − b + b·len/avg_len))`, where `N`, `df` and `avg_len` are the
//! collection's live statistics. Each index holds one collection of one tenant, so the
//! statistics never mix tenants or collections.
//!
//! Postings map a dense slot per chunk to its term frequency; a freed slot is reused. The term
//! dictionary only grows (an emptied term keeps its id), which bounds it by the vocabulary
//! ever seen.

use std::collections::HashMap;

/// BM25 parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25 {
    /// Term-frequency saturation (1.2 in Lucene).
    pub k1: f32,
    /// Length normalisation, 0 (none) to 1 (full); 0.75 in Lucene.
    pub b: f32,
}

impl Default for Bm25 {
    fn default() -> Self {
        Self { k1: 1.2, b: 0.75 }
    }
}

impl Bm25 {
    /// Inverse document frequency of a term found in `df` of `n` chunks.
    pub fn idf(n: u64, df: u64) -> f32 {
        ((n as f64 - df as f64 + 0.5) / (df as f64 + 0.5)).ln_1p() as f32
    }

    /// The saturated, length-normalised weight of a term seen `tf` times in a chunk of `len`
    /// terms.
    pub fn weight(&self, tf: u32, len: u32, avg_len: f32) -> f32 {
        let tf = tf as f32;
        let norm = if avg_len > 0.0 {
            1.0 - self.b + self.b * len as f32 / avg_len
        } else {
            1.0
        };
        tf * (self.k1 + 1.0) / (tf + self.k1 * norm)
    }
}

struct Entry {
    id: u64,
    len: u32,
    terms: Vec<u32>,
}

/// The inverted index of one collection.
#[derive(Default)]
pub struct InvertedIndex {
    dictionary: HashMap<String, u32>,
    postings: Vec<HashMap<u32, u16>>,
    slots: HashMap<u64, u32>,
    entries: Vec<Option<Entry>>,
    free: Vec<u32>,
    total_len: u64,
}

impl InvertedIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Chunks indexed.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no chunk is indexed.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// In how many chunks `term` occurs.
    pub fn document_frequency(&self, term: &str) -> u64 {
        self.dictionary
            .get(term)
            .map_or(0, |&t| self.postings[t as usize].len() as u64)
    }

    /// Average chunk length in terms.
    pub fn average_len(&self) -> f32 {
        if self.slots.is_empty() {
            0.0
        } else {
            self.total_len as f32 / self.slots.len() as f32
        }
    }

    /// Indexes chunk `id` with its analysed `terms`, replacing what it had.
    pub fn insert(&mut self, id: u64, terms: &[String]) {
        self.remove(id);
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for term in terms {
            let next = self.dictionary.len() as u32;
            let t = *self.dictionary.entry(term.clone()).or_insert(next);
            if t as usize == self.postings.len() {
                self.postings.push(HashMap::new());
            }
            *counts.entry(t).or_default() += 1;
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.entries.push(None);
                (self.entries.len() - 1) as u32
            }
        };
        for (&t, &tf) in &counts {
            self.postings[t as usize].insert(slot, tf.min(u16::MAX as u32) as u16);
        }
        let len = terms.len() as u32;
        self.total_len += len as u64;
        self.entries[slot as usize] = Some(Entry {
            id,
            len,
            terms: counts.into_keys().collect(),
        });
        self.slots.insert(id, slot);
    }

    /// Removes chunk `id`; absent ids are ignored.
    pub fn remove(&mut self, id: u64) {
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        if let Some(entry) = self.entries[slot as usize].take() {
            for t in entry.terms {
                self.postings[t as usize].remove(&slot);
            }
            self.total_len -= entry.len as u64;
        }
        self.free.push(slot);
    }

    /// The best `k` chunks for the distinct query `terms` among those `accept` lets through,
    /// best first (ties by id), with their BM25 scores. Chunks sharing no term are not returned.
    pub fn search(
        &self,
        terms: &[String],
        params: &Bm25,
        k: usize,
        accept: impl Fn(u64) -> bool,
    ) -> Vec<(u64, f32)> {
        let n = self.slots.len() as u64;
        if n == 0 || k == 0 {
            return Vec::new();
        }
        let avg_len = self.average_len();
        let lists: Vec<(f32, &HashMap<u32, u16>)> = terms
            .iter()
            .filter_map(|term| self.dictionary.get(term))
            .map(|&t| &self.postings[t as usize])
            .filter(|p| !p.is_empty())
            .map(|p| (Bm25::idf(n, p.len() as u64), p))
            .collect();
        let touched: usize = lists.iter().map(|(_, p)| p.len()).sum();
        let weight = |slot: u32, tf: u16| {
            let len = self.entries[slot as usize].as_ref().map_or(0, |e| e.len);
            params.weight(tf as u32, len, avg_len)
        };
        let hit = |slot: u32, score: f32| {
            let id = self.entries[slot as usize].as_ref()?.id;
            accept(id).then_some((id, score))
        };
        // Accumulate in a dense array when the query touches a good share of the chunks (common
        // words), in a map when it touches few.
        let mut hits: Vec<(u64, f32)> = if touched * 8 >= self.entries.len() {
            let mut acc = vec![0f32; self.entries.len()];
            for (idf, postings) in &lists {
                for (&slot, &tf) in *postings {
                    acc[slot as usize] += idf * weight(slot, tf);
                }
            }
            acc.into_iter()
                .enumerate()
                .filter(|(_, s)| *s > 0.0)
                .filter_map(|(slot, s)| hit(slot as u32, s))
                .collect()
        } else {
            let mut acc: HashMap<u32, f32> = HashMap::with_capacity(touched);
            for (idf, postings) in &lists {
                for (&slot, &tf) in *postings {
                    *acc.entry(slot).or_default() += idf * weight(slot, tf);
                }
            }
            acc.into_iter().filter_map(|(s, v)| hit(s, v)).collect()
        };
        let order = |a: &(u64, f32), b: &(u64, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if hits.len() > k {
            hits.select_nth_unstable_by(k - 1, order);
            hits.truncate(k);
        }
        hits.sort_by(order);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyword::english;

    fn index(docs: &[(u64, &str)]) -> InvertedIndex {
        let mut idx = InvertedIndex::new();
        for (id, text) in docs {
            idx.insert(*id, &english().terms(text));
        }
        idx
    }

    fn search(idx: &InvertedIndex, q: &str, k: usize) -> Vec<(u64, f32)> {
        idx.search(&english().query_terms(q), &Bm25::default(), k, |_| true)
    }

    #[test]
    fn scores_match_the_bm25_formula() {
        let idx = index(&[
            (1, "vitamin d deficiency"),
            (2, "vitamin c and the common cold"),
            (3, "exercise and heart disease"),
        ]);
        // "deficiency": df 1 of 3; len 3 (stemmed: vitamin, d, defici); avg len (3+4+3)/3.
        let avg = 10.0 / 3.0;
        let expected = Bm25::idf(3, 1) * Bm25::default().weight(1, 3, avg);
        let hits = search(&idx, "deficiency", 10);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].0, 1);
        assert!(
            (hits[0].1 - expected).abs() < 1e-6,
            "{hits:?} vs {expected}"
        );
        // A rarer term outweighs a common one.
        let hits = search(&idx, "vitamin cold", 10);
        assert_eq!(hits[0].0, 2);
        assert_eq!(hits.len(), 2);
        assert!(Bm25::idf(3, 1) > Bm25::idf(3, 2));
    }

    #[test]
    fn statistics_follow_inserts_replacements_and_removals() {
        let mut idx = index(&[(1, "apple banana"), (2, "apple cherry"), (3, "durian")]);
        assert_eq!(idx.document_frequency("appl"), 2);
        assert_eq!(idx.len(), 3);
        // Replacing a chunk's text moves its postings.
        idx.insert(2, &english().terms("cherry cherry"));
        assert_eq!(idx.document_frequency("appl"), 1);
        assert_eq!(idx.document_frequency("cherri"), 1);
        idx.remove(1);
        idx.remove(42);
        assert_eq!(idx.document_frequency("appl"), 0);
        assert_eq!(idx.len(), 2);
        assert!((idx.average_len() - 1.5).abs() < 1e-6);
        assert!(search(&idx, "apple", 10).is_empty());
        // A freed slot is reused by the next chunk.
        idx.insert(4, &english().terms("apple"));
        assert_eq!(idx.entries.len(), 3);
        assert_eq!(search(&idx, "apple", 10)[0].0, 4);
    }

    #[test]
    fn top_k_is_ordered_and_filtered() {
        let docs: Vec<(u64, String)> = (0..50)
            .map(|i| (i, format!("term {}", "alpha ".repeat(i as usize % 7 + 1))))
            .collect();
        let refs: Vec<(u64, &str)> = docs.iter().map(|(i, t)| (*i, t.as_str())).collect();
        let idx = index(&refs);
        let all = search(&idx, "alpha", 50);
        assert_eq!(all.len(), 50);
        assert!(all.windows(2).all(|w| w[0].1 >= w[1].1));
        let top = search(&idx, "alpha", 5);
        assert_eq!(top, all[..5].to_vec());
        let even = idx.search(&english().query_terms("alpha"), &Bm25::default(), 5, |id| {
            id % 2 == 0
        });
        assert_eq!(even.len(), 5);
        assert!(even.iter().all(|(id, _)| id % 2 == 0));
        assert!(search(&idx, "unknown words", 5).is_empty());
    }

    #[test]
    fn length_normalisation_prefers_the_shorter_chunk() {
        let idx = index(&[
            (1, "kidney stone"),
            (2, "kidney stone diet fluid intake calcium"),
        ]);
        let hits = search(&idx, "kidney stone", 2);
        assert_eq!(hits[0].0, 1);
        assert!(hits[0].1 > hits[1].1);
    }
}
