//! Weight-of-evidence prior: the baseline for a binary label. Each feature is cut into
//! quantile bins on the training rows (missing values are a bin of their own); a bin's WOE is
//! the smoothed log ratio of its share of positives to its share of negatives, and the score
//! is the training log-odds plus the sum of the row's WOEs (naive Bayes).

use serde::{Deserialize, Serialize};

pub use t0_model::woe::Woe;

use super::{Design, FitError, Learner, Target};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WoeConfig {
    pub bins: usize,
}

impl Learner for Woe {
    type Config = WoeConfig;
    const KIND: &'static str = "woe";

    fn fit(cfg: &WoeConfig, train: &Design, _valid: Option<&Design>) -> Result<Self, FitError> {
        let Target::Binary(y) = &train.y else {
            return Err(FitError::WrongTarget { want: "binary", found: train.y.name() });
        };
        let (n, d) = (train.rows(), train.d);
        let pos = y.iter().filter(|v| **v > 0.5).count() as f64;
        let neg = n as f64 - pos;
        if pos == 0.0 || neg == 0.0 {
            return Err(FitError::Config("a WOE prior needs both classes in the training rows".into()));
        }
        let prior = (pos / neg).ln();
        let mut m = Woe { prior, edges: Vec::new(), woe: Vec::new(), missing: Vec::new() };
        for j in 0..d {
            let mut v: Vec<f64> = (0..n).map(|i| train.x[i * d + j]).filter(|v| !v.is_nan()).collect();
            v.sort_by(f64::total_cmp);
            let mut edges: Vec<f64> = if v.is_empty() {
                Vec::new()
            } else {
                (1..cfg.bins.max(2)).map(|k| v[k * v.len() / cfg.bins.max(2)]).collect()
            };
            edges.dedup();
            m.edges.push(edges);
            let nb = m.edges[j].len() + 1;
            let mut counts = vec![(0.0, 0.0); nb + 1];
            for (i, yi) in y.iter().enumerate() {
                let b = m.bin(j, train.x[i * d + j]).unwrap_or(nb);
                if *yi > 0.5 { counts[b].0 += 1.0 } else { counts[b].1 += 1.0 }
            }
            let k = (nb + 1) as f64;
            let w: Vec<f64> = counts
                .iter()
                .map(|(p, q)| ((p + 0.5) / (pos + 0.5 * k)).ln() - ((q + 0.5) / (neg + 0.5 * k)).ln())
                .collect();
            m.missing.push(w[nb]);
            m.woe.push(w[..nb].to_vec());
        }
        Ok(m)
    }
}
