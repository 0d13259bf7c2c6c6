//! Sentence vectors from token states: attention-masked mean pooling, then L2 normalisation.

/// Averages each sequence's token vectors where `mask` is 1, then L2-normalises the result.
///
/// `hidden` is `[batch, seq, dim]` row-major and `mask` is `[batch, seq]`.
pub fn mean_pool_normalize(
    hidden: &[f32],
    mask: &[i64],
    batch: usize,
    seq: usize,
    dim: usize,
) -> Vec<Vec<f32>> {
    debug_assert_eq!(hidden.len(), batch * seq * dim);
    debug_assert_eq!(mask.len(), batch * seq);
    (0..batch)
        .map(|b| {
            let mut sum = vec![0f32; dim];
            let mut count = 0f32;
            for t in 0..seq {
                if mask[b * seq + t] == 0 {
                    continue;
                }
                count += 1.0;
                let row = &hidden[(b * seq + t) * dim..(b * seq + t + 1) * dim];
                for (s, h) in sum.iter_mut().zip(row) {
                    *s += h;
                }
            }
            // sentence-transformers clamps the count to 1e-9; an all-masked row stays zero.
            let count = count.max(1e-9);
            for s in &mut sum {
                *s /= count;
            }
            l2_normalize(&mut sum);
            sum
        })
        .collect()
}

/// Scales `v` to unit length; a zero vector is left as it is.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in v {
        *x /= norm;
    }
}

/// Dot product, which is the cosine similarity of unit vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_tokens_are_ignored_and_result_is_unit_length() {
        // batch 2, seq 3, dim 2
        let hidden = [
            1.0, 0.0, 3.0, 0.0, 100.0, 100.0, // seq 0: third token is padding
            0.0, 2.0, 0.0, 4.0, 0.0, 6.0, // seq 1: all tokens real
        ];
        let mask = [1, 1, 0, 1, 1, 1];
        let out = mean_pool_normalize(&hidden, &mask, 2, 3, 2);
        assert_eq!(out[0], vec![1.0, 0.0]); // mean (2,0) normalised
        assert_eq!(out[1], vec![0.0, 1.0]); // mean (0,4) normalised
        for v in &out {
            assert!((dot(v, v) - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn mean_is_taken_before_normalising() {
        let hidden = [3.0, 4.0, 0.0, 0.0];
        let mask = [1, 1];
        let out = mean_pool_normalize(&hidden, &mask, 1, 2, 2);
        // mean (1.5, 2) -> normalised (0.6, 0.8)
        assert!((out[0][0] - 0.6).abs() < 1e-6 && (out[0][1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn all_masked_row_stays_zero() {
        let out = mean_pool_normalize(&[5.0, 5.0], &[0], 1, 1, 2);
        assert_eq!(out[0], vec![0.0, 0.0]);
    }
}
