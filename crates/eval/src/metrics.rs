//! Quality of a compressed model's sentence embeddings against the original model's.

/// Cosine similarity (0 when either vector is zero; exactly 1 for identical vectors).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a == b && a.iter().any(|&x| x != 0.0) {
        return 1.0;
    }
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// Ranks (1-based), ties sharing their mean rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0f64; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman rank correlation (Pearson correlation of the ranks); 1 for identical orders.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in ra.iter().zip(&rb) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma) * (x - ma);
        bb += (y - mb) * (y - mb);
    }
    if aa == 0.0 || bb == 0.0 {
        if aa == bb {
            1.0
        } else {
            0.0
        }
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// Each sentence's nearest other sentence by cosine.
fn nearest(e: &[Vec<f32>]) -> Vec<usize> {
    (0..e.len())
        .map(|i| {
            (0..e.len())
                .filter(|&j| j != i)
                .max_by(|&a, &b| cosine(&e[i], &e[a]).total_cmp(&cosine(&e[i], &e[b])))
                .unwrap_or(i)
        })
        .collect()
}

/// How a compressed model's embeddings compare with the original's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Quality {
    /// Mean over sentences of cos(original, compressed).
    pub mean_cosine: f64,
    pub min_cosine: f64,
    /// Share of sentences whose nearest neighbour in the set is the same.
    pub top1_agreement: f64,
    /// Spearman correlation of all pairwise similarities.
    pub spearman: f64,
}

/// Compares embeddings sentence by sentence (`original[i]` with `compressed[i]`).
pub fn quality(original: &[Vec<f32>], compressed: &[Vec<f32>]) -> Quality {
    assert_eq!(
        original.len(),
        compressed.len(),
        "one embedding per sentence"
    );
    let cos: Vec<f64> = original
        .iter()
        .zip(compressed)
        .map(|(a, b)| cosine(a, b))
        .collect();
    let n = cos.len().max(1) as f64;
    let (na, nb) = (nearest(original), nearest(compressed));
    let agree = na.iter().zip(&nb).filter(|(a, b)| a == b).count() as f64;
    let pairs = |e: &[Vec<f32>]| -> Vec<f64> {
        let mut v = Vec::new();
        for i in 0..e.len() {
            for j in i + 1..e.len() {
                v.push(cosine(&e[i], &e[j]));
            }
        }
        v
    };
    Quality {
        mean_cosine: cos.iter().sum::<f64>() / n,
        min_cosine: cos.iter().copied().fold(f64::INFINITY, f64::min),
        top1_agreement: agree / n,
        spearman: spearman(&pairs(original), &pairs(compressed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_cases() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        let e = vec![vec![1.0, 0.0], vec![0.9, 0.1], vec![0.0, 1.0]];
        let q = quality(&e, &e);
        assert_eq!(q.mean_cosine, 1.0);
        assert_eq!(q.top1_agreement, 1.0);
        assert!((q.spearman - 1.0).abs() < 1e-12);
        // Swap which of 0 and 2 is near 1: sentence 1's neighbour changes.
        let f = vec![vec![1.0, 0.0], vec![0.1, 0.9], vec![0.0, 1.0]];
        let q = quality(&e, &f);
        assert!(q.top1_agreement < 1.0 && q.min_cosine < 0.25);
    }
}
