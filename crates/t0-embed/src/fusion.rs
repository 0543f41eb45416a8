//! Fusion of per-modality vectors into one vector per (entity, T0).
//!
//! Each modality's vector is compressed (signed log1p, so audio in Hz and dB and unit text
//! vectors meet on one scale), L2-normalised, and projected to the common dimension `d` by a
//! fixed Gaussian matrix N(0, 1/d) drawn from a splitmix64 stream seeded by the modality's
//! name: the same modality always gets the same projection, on every machine. Then:
//! - `concat`: the projections side by side in declaration order (M x d; zeros when absent)
//! - `sum_pool`: the sum of the present modalities' projections (d)
//! - `max_pool`: the element-wise maximum over the present modalities (d; zeros when none)
//!
//! A presence mask (`has_<modality>`) travels with every fused row, so a model can tell
//! "absent" from "small".

use t0_core::rng::SplitMix;
use t0_project::def::FusionStrategy;

const SEED: u64 = 0x7430_636c_6970_6675; // "t0clipfu"

/// The (dim_in x d) projection of modality `name`, row-major.
pub fn projection(name: &str, dim_in: usize, d: usize) -> Vec<f32> {
    let h = blake3::hash(name.as_bytes());
    let mut rng = SplitMix(SEED ^ u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes")));
    let scale = (1.0 / d as f64).sqrt();
    (0..dim_in * d).map(|_| (rng.normal() * scale) as f32).collect()
}

/// A modality's projector to the common dimension.
pub struct Projector {
    pub name: String,
    pub dim_in: usize,
    pub d: usize,
    w: Vec<f32>,
}

impl Projector {
    pub fn new(name: &str, dim_in: usize, d: usize) -> Self {
        Projector { name: name.to_string(), dim_in, d, w: projection(name, dim_in, d) }
    }

    /// Compress, normalise and project `v` (f64 accumulation in a fixed order).
    pub fn project(&self, v: &[f32]) -> Vec<f32> {
        let c: Vec<f64> = v.iter().map(|&x| (x as f64).signum() * (x as f64).abs().ln_1p()).collect();
        let norm = c.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        let mut out = vec![0f64; self.d];
        for (i, x) in c.iter().enumerate() {
            let x = x / norm;
            let row = &self.w[i * self.d..(i + 1) * self.d];
            for (o, w) in out.iter_mut().zip(row) {
                *o += x * *w as f64;
            }
        }
        out.into_iter().map(|x| x as f32).collect()
    }
}

/// Output dimension of `strategy` over `m` modalities of common dimension `d`.
pub fn dim(strategy: FusionStrategy, m: usize, d: usize) -> usize {
    match strategy {
        FusionStrategy::Concat => m * d,
        FusionStrategy::SumPool | FusionStrategy::MaxPool => d,
    }
}

/// Fuse the projections of one row (`None` = modality absent).
pub fn fuse(strategy: FusionStrategy, parts: &[Option<Vec<f32>>], d: usize) -> Vec<f32> {
    match strategy {
        FusionStrategy::Concat => parts.iter().flat_map(|p| p.clone().unwrap_or_else(|| vec![0.0; d])).collect(),
        FusionStrategy::SumPool => {
            let mut out = vec![0f32; d];
            for p in parts.iter().flatten() {
                out.iter_mut().zip(p).for_each(|(o, x)| *o += x);
            }
            out
        }
        FusionStrategy::MaxPool => {
            let present: Vec<&Vec<f32>> = parts.iter().flatten().collect();
            if present.is_empty() {
                return vec![0.0; d];
            }
            (0..d).map(|k| present.iter().map(|p| p[k]).fold(f32::NEG_INFINITY, f32::max)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_is_seeded_by_name_and_fusion_respects_absence() {
        assert_eq!(projection("text", 4, 3), projection("text", 4, 3));
        assert_ne!(projection("text", 4, 3), projection("audio", 4, 3));
        let a = Some(vec![1.0, -2.0]);
        let b = Some(vec![0.5, 3.0]);
        assert_eq!(fuse(FusionStrategy::SumPool, &[a.clone(), b.clone()], 2), vec![1.5, 1.0]);
        assert_eq!(fuse(FusionStrategy::MaxPool, &[a.clone(), None, b.clone()], 2), vec![1.0, 3.0]);
        assert_eq!(fuse(FusionStrategy::Concat, &[None, b], 2), vec![0.0, 0.0, 0.5, 3.0]);
        assert_eq!(fuse(FusionStrategy::MaxPool, &[None, None], 2), vec![0.0, 0.0]);
        let p = Projector::new("x", 3, 2);
        assert_eq!(p.project(&[1.0, 2.0, 3.0]), p.project(&[1.0, 2.0, 3.0]));
    }
}
