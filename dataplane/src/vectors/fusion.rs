//! Fusion of a dense and a keyword result list into one ranking.
//!
//! - **Reciprocal rank fusion** (RRF): a point at 1-based rank `r` in a list gains
//!   `weight / (k + r)` from it. Only ranks matter, so the lists' very different score scales
//!   (cosine in −1..1, BM25 unbounded) need no calibration. `k` (60 in the original paper)
//!   flattens the advantage of the very top ranks.
//! - **Distribution-based score fusion** (DBSF, as in Qdrant): each list's scores are mapped to
//!   0..1 between `mean − 3σ` and `mean + 3σ` of that list, and the weighted normalised scores
//!   are summed.
//!
//! Both take a weight per list, so either can lean towards one retriever. A fused hit keeps the
//! dense and keyword scores it was found with.

use std::collections::HashMap;

use super::Hit;

pub use ragplane_config::FusionMethod;

/// Fusion settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fusion {
    /// The method.
    pub method: FusionMethod,
    /// RRF's rank constant.
    pub rrf_k: f32,
    /// Weight of the dense list.
    pub dense_weight: f32,
    /// Weight of the keyword list.
    pub keyword_weight: f32,
}

impl Default for Fusion {
    fn default() -> Self {
        Self {
            method: FusionMethod::Rrf,
            rrf_k: 60.0,
            dense_weight: 1.0,
            keyword_weight: 1.0,
        }
    }
}

impl Fusion {
    /// Fuses two lists, each best first, into the best `k`, ties broken by point id.
    pub fn fuse(&self, dense: Vec<Hit>, keyword: Vec<Hit>, k: usize) -> Vec<Hit> {
        let dense_part = self.contributions(&dense, self.dense_weight);
        let keyword_part = self.contributions(&keyword, self.keyword_weight);
        let mut fused: HashMap<u64, Hit> = HashMap::with_capacity(dense.len() + keyword.len());
        for (hit, part) in dense.into_iter().zip(dense_part) {
            fused.insert(
                hit.id,
                Hit {
                    score: part,
                    keyword: None,
                    ..hit
                },
            );
        }
        for (hit, part) in keyword.into_iter().zip(keyword_part) {
            match fused.get_mut(&hit.id) {
                Some(found) => {
                    found.score += part;
                    found.keyword = hit.keyword;
                }
                None => {
                    fused.insert(
                        hit.id,
                        Hit {
                            score: part,
                            dense: None,
                            ..hit
                        },
                    );
                }
            }
        }
        let mut out: Vec<Hit> = fused.into_values().collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        out.truncate(k);
        out
    }

    /// Each hit's weighted contribution to the fused score.
    fn contributions(&self, hits: &[Hit], weight: f32) -> Vec<f32> {
        match self.method {
            FusionMethod::Rrf => (0..hits.len())
                .map(|rank| weight / (self.rrf_k + rank as f32 + 1.0))
                .collect(),
            FusionMethod::Dbsf => {
                let n = hits.len() as f32;
                if hits.is_empty() {
                    return Vec::new();
                }
                let mean = hits.iter().map(|h| h.score).sum::<f32>() / n;
                let var = hits.iter().map(|h| (h.score - mean).powi(2)).sum::<f32>() / n;
                let sd = var.sqrt();
                hits.iter()
                    .map(|h| {
                        let norm = if sd > 0.0 {
                            ((h.score - (mean - 3.0 * sd)) / (6.0 * sd)).clamp(0.0, 1.0)
                        } else {
                            0.5
                        };
                        weight * norm
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::Payload;

    fn hits(scored: &[(u64, f32)], keyword: bool) -> Vec<Hit> {
        scored
            .iter()
            .map(|&(id, s)| {
                let payload = Payload {
                    tenant: "t".into(),
                    collection: "c".into(),
                    document: format!("d{id}"),
                    title: String::new(),
                    chunk: 0,
                    text: String::new(),
                };
                if keyword {
                    Hit::keyword(id, s, payload)
                } else {
                    Hit::dense(id, s, payload)
                }
            })
            .collect()
    }

    #[test]
    fn rrf_sums_reciprocal_ranks_and_keeps_both_scores() {
        let dense = hits(&[(1, 0.9), (2, 0.8), (3, 0.7)], false);
        let keyword = hits(&[(3, 12.0), (4, 9.0), (1, 3.0)], true);
        let fused = Fusion::default().fuse(dense, keyword, 10);
        let ids: Vec<u64> = fused.iter().map(|h| h.id).collect();
        // 1: 1/61 + 1/63; 3: 1/63 + 1/61 (a tie, broken by id); 2: 1/62; 4: 1/62.
        assert_eq!(ids, [1, 3, 2, 4]);
        assert!((fused[0].score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-6);
        assert_eq!(fused[0].dense, Some(0.9));
        assert_eq!(fused[0].keyword, Some(3.0));
        assert_eq!(fused[2].keyword, None);
        assert_eq!(fused[3].dense, None);
        assert_eq!(fused[3].keyword, Some(9.0));
    }

    #[test]
    fn weights_lean_towards_one_list() {
        let dense = hits(&[(1, 0.9), (2, 0.8)], false);
        let keyword = hits(&[(2, 5.0), (1, 4.0)], true);
        let towards_keyword = Fusion {
            keyword_weight: 2.0,
            ..Fusion::default()
        };
        assert_eq!(
            towards_keyword.fuse(dense.clone(), keyword.clone(), 1)[0].id,
            2
        );
        let towards_dense = Fusion {
            dense_weight: 2.0,
            ..Fusion::default()
        };
        assert_eq!(towards_dense.fuse(dense, keyword, 1)[0].id, 1);
    }

    #[test]
    fn dbsf_normalises_each_list_by_its_spread() {
        let dbsf = Fusion {
            method: FusionMethod::Dbsf,
            ..Fusion::default()
        };
        // The keyword list's scale is a hundred times larger; normalised, both count alike.
        let dense = hits(&[(1, 0.9), (2, 0.5), (3, 0.1)], false);
        let keyword = hits(&[(3, 90.0), (2, 50.0), (1, 10.0)], true);
        let fused = dbsf.fuse(dense, keyword, 3);
        for h in &fused {
            assert!((h.score - 1.0).abs() < 1e-5, "{h:?}");
        }
        // One-element lists have no spread and count one half.
        let fused = dbsf.fuse(hits(&[(7, 0.3)], false), Vec::new(), 3);
        assert_eq!(fused.len(), 1);
        assert!((fused[0].score - 0.5).abs() < 1e-6);
    }

    #[test]
    fn an_empty_list_leaves_the_other_in_order() {
        let keyword = hits(&[(5, 3.0), (6, 2.0), (7, 1.0)], true);
        let fused = Fusion::default().fuse(Vec::new(), keyword, 2);
        let ids: Vec<u64> = fused.iter().map(|h| h.id).collect();
        assert_eq!(ids, [5, 6]);
    }
}
