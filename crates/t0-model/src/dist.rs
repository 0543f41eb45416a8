//! The error distributions of accelerated-failure-time survival, log T = f + σ·ε, and the
//! maths both AFT families share: densities, survival and quantiles of ε (the parametric
//! [`crate::aft::Aft`]) and, through `t0-train`, XGBoost's AFT loss, gradient and Hessian
//! (the GBDT's AFT objective). One place, so the two families cannot drift apart.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dist {
    Normal,
    Logistic,
    Extreme,
}

const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

impl Dist {
    pub fn name(self) -> &'static str {
        match self {
            Dist::Normal => "lognormal",
            Dist::Logistic => "loglogistic",
            Dist::Extreme => "weibull",
        }
    }
    pub fn parse(s: &str) -> Option<Dist> {
        match s {
            "normal" | "lognormal" => Some(Dist::Normal),
            "logistic" | "loglogistic" => Some(Dist::Logistic),
            "extreme" | "weibull" => Some(Dist::Extreme),
            _ => None,
        }
    }
    pub fn pdf(self, z: f64) -> f64 {
        self.log_pdf(z).exp()
    }
    pub fn log_pdf(self, z: f64) -> f64 {
        match self {
            Dist::Normal => -0.5 * z * z - LN_SQRT_2PI,
            Dist::Logistic => z - 2.0 * softplus(z),
            Dist::Extreme => z - z.exp(),
        }
    }
    pub fn cdf(self, z: f64) -> f64 {
        match self {
            Dist::Normal => 0.5 * libm::erfc(-z / std::f64::consts::SQRT_2),
            Dist::Logistic => sigmoid(z),
            Dist::Extreme => -(-z.exp()).exp_m1(),
        }
    }
    /// log S(z) = log(1 − F(z)), accurate in both tails.
    pub fn log_surv(self, z: f64) -> f64 {
        match self {
            Dist::Normal => {
                if z < 30.0 {
                    (0.5 * libm::erfc(z / std::f64::consts::SQRT_2)).ln()
                } else {
                    // Mills ratio asymptotics.
                    -0.5 * z * z - LN_SQRT_2PI - z.ln() + (1.0 - 1.0 / (z * z) + 3.0 / z.powi(4)).ln()
                }
            }
            Dist::Logistic => -softplus(z),
            Dist::Extreme => -z.exp(),
        }
    }
    /// (d/dz log f, d²/dz² log f).
    pub fn dlog_pdf(self, z: f64) -> (f64, f64) {
        match self {
            Dist::Normal => (-z, -1.0),
            Dist::Logistic => {
                let s = sigmoid(z);
                (1.0 - 2.0 * s, -2.0 * s * (1.0 - s))
            }
            Dist::Extreme => (1.0 - z.exp(), -z.exp()),
        }
    }
    /// (d/dz log S, d²/dz² log S).
    pub fn dlog_surv(self, z: f64) -> (f64, f64) {
        match self {
            Dist::Normal => {
                let h = normal_hazard(z);
                (-h, -h * (h - z))
            }
            Dist::Logistic => {
                let s = sigmoid(z);
                (-s, -s * (1.0 - s))
            }
            Dist::Extreme => (-z.exp(), -z.exp()),
        }
    }
    /// The standard deviation of ε (σ = 1).
    pub fn spread(self) -> f64 {
        match self {
            Dist::Normal => 1.0,
            Dist::Logistic => std::f64::consts::PI / 3f64.sqrt(),
            Dist::Extreme => std::f64::consts::PI / 6f64.sqrt(),
        }
    }
    /// z with S(z) = 1 − q (the q-quantile of ε).
    pub fn quantile(self, q: f64) -> f64 {
        match self {
            Dist::Normal => normal_quantile(q),
            Dist::Logistic => (q / (1.0 - q)).ln(),
            Dist::Extreme => (-(-q).ln_1p()).ln(),
        }
    }
}

pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn softplus(z: f64) -> f64 {
    if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() }
}

/// φ(z) / (1 − Φ(z)).
fn normal_hazard(z: f64) -> f64 {
    if z < 30.0 {
        let s = 0.5 * libm::erfc(z / std::f64::consts::SQRT_2);
        (-0.5 * z * z - LN_SQRT_2PI).exp() / s
    } else {
        z / (1.0 - 1.0 / (z * z) + 3.0 / z.powi(4))
    }
}

/// Φ⁻¹(q) by Newton on erfc from a logistic start (to machine precision).
pub fn normal_quantile(q: f64) -> f64 {
    if q <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if q >= 1.0 {
        return f64::INFINITY;
    }
    let mut z = (q / (1.0 - q)).ln() / 1.702;
    for _ in 0..100 {
        let f = Dist::Normal.cdf(z) - q;
        let step = f / Dist::Normal.pdf(z).max(1e-300);
        z -= step;
        if step.abs() < 1e-15 * (1.0 + z.abs()) {
            break;
        }
    }
    z
}
