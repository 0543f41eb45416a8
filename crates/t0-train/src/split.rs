//! Time-respecting splits: blocks of whole T0s in time order (train, calibration, validation,
//! test) with an embargo before each boundary, so no label of an earlier block matures inside
//! a later one; and expanding-window folds inside the training block for out-of-fold
//! predictions.

use chrono::{DateTime, Months, TimeDelta};
use serde::{Deserialize, Serialize};

use t0_project::def::Horizon;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Block {
    Train,
    Calibration,
    Validation,
    Test,
    /// Dropped: its label would mature after the next block begins.
    Embargo,
    /// The label is not known on this row (it trains elsewhere on other labels).
    Unlabelled,
}

impl Block {
    pub fn as_str(self) -> &'static str {
        match self {
            Block::Train => "train",
            Block::Calibration => "calibration",
            Block::Validation => "validation",
            Block::Test => "test",
            Block::Embargo => "embargo",
            Block::Unlabelled => "unlabelled",
        }
    }
}

/// `t0 + horizon` in µs, calendar-aware as the labels are (`1 year` after 2020-01-01 is
/// 2021-01-01); saturates on overflow.
pub fn add_horizon(t0_us: i64, h: &Horizon) -> i64 {
    let Some(t) = DateTime::from_timestamp_micros(t0_us) else { return i64::MAX };
    let out = match h.unit.as_str() {
        "hour" => t.checked_add_signed(TimeDelta::hours(h.n)),
        "day" => t.checked_add_signed(TimeDelta::days(h.n)),
        "week" => t.checked_add_signed(TimeDelta::weeks(h.n)),
        "month" => u32::try_from(h.n).ok().and_then(|m| t.checked_add_months(Months::new(m))),
        "year" => u32::try_from(h.n * 12).ok().and_then(|m| t.checked_add_months(Months::new(m))),
        _ => None,
    };
    out.map(|t| t.timestamp_micros()).unwrap_or(i64::MAX)
}

/// Fractions of the distinct T0s per block (the rest is training).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fractions {
    pub calibration: f64,
    pub validation: f64,
    pub test: f64,
}

/// Assign each row (ordered by T0) to a block. Boundaries fall between distinct T0s; a
/// training row whose `t0 + embargo` (any of the horizons) passes the first T0 of the
/// calibration block is embargoed, so no training label matures inside the evaluation
/// period. Returns the blocks, or an error naming what is too small.
pub fn chronological(t0: &[i64], f: Fractions, embargo: &[Horizon]) -> Result<Vec<Block>, String> {
    debug_assert!(t0.windows(2).all(|w| w[0] <= w[1]), "rows ordered by T0");
    let mut distinct: Vec<i64> = t0.to_vec();
    distinct.dedup();
    let k = distinct.len();
    if k < 4 {
        return Err(format!(
            "{k} distinct T0 value(s): a chronological split needs at least 4 (train, calibration, validation, test)"
        ));
    }
    // Block starts as indices into `distinct`, at least one T0 per block.
    let take = |q: f64| ((k as f64 * q).round() as usize).max(1);
    let test_n = take(f.test);
    let valid_n = take(f.validation);
    let cal_n = take(f.calibration);
    if test_n + valid_n + cal_n >= k {
        return Err(format!("{k} distinct T0 values are too few for the split fractions {f:?}"));
    }
    let test_from = distinct[k - test_n];
    let valid_from = distinct[k - test_n - valid_n];
    let cal_from = distinct[k - test_n - valid_n - cal_n];
    let matures = |t: i64| embargo.iter().map(|h| add_horizon(t, h)).max().unwrap_or(t);
    let blocks = t0
        .iter()
        .map(|&t| {
            // Only training labels are embargoed: the evaluation blocks fit no model weights,
            // so a calibration label maturing inside validation leaks nothing into a fit.
            if t >= test_from {
                Block::Test
            } else if t >= valid_from {
                Block::Validation
            } else if t >= cal_from {
                Block::Calibration
            } else if matures(t) > cal_from {
                Block::Embargo
            } else {
                Block::Train
            }
        })
        .collect::<Vec<_>>();
    for b in [Block::Train, Block::Calibration, Block::Validation, Block::Test] {
        if !blocks.contains(&b) {
            return Err(format!(
                "the {} block is empty after the embargo ({} distinct T0 values; the longest label horizon spans the whole training block): add T0s or shorten the horizon (train.embargo)",
                b.as_str(),
                k
            ));
        }
    }
    Ok(blocks)
}

/// A random split on request (seeded): same proportions, no embargo. Leaks time; the caller
/// warns.
pub fn random(n: usize, f: Fractions, seed: u64) -> Vec<Block> {
    let mut rng = SplitMix(seed);
    (0..n)
        .map(|_| {
            let u = rng.unit();
            if u < f.test {
                Block::Test
            } else if u < f.test + f.validation {
                Block::Validation
            } else if u < f.test + f.validation + f.calibration {
                Block::Calibration
            } else {
                Block::Train
            }
        })
        .collect()
}

/// Expanding-window folds over `rows` (ordered by T0): fold i trains on the T0s before its
/// slice (minus an embargo) and predicts the slice. The first slice has no out-of-fold
/// prediction. Returns (fit rows, predict rows) per fold.
pub fn expanding_folds(t0: &[i64], rows: &[usize], folds: usize, embargo: &[Horizon]) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut distinct: Vec<i64> = rows.iter().map(|&i| t0[i]).collect();
    distinct.dedup();
    let k = distinct.len();
    if k < folds + 1 {
        return Vec::new();
    }
    let matures = |t: i64| embargo.iter().map(|h| add_horizon(t, h)).max().unwrap_or(t);
    let mut out = Vec::new();
    for f in 1..=folds {
        let lo = distinct[k * f / (folds + 1)];
        let hi = if f == folds { i64::MAX } else { distinct[k * (f + 1) / (folds + 1)] };
        let fit: Vec<usize> = rows.iter().copied().filter(|&i| t0[i] < lo && matures(t0[i]) <= lo).collect();
        let pred: Vec<usize> = rows.iter().copied().filter(|&i| t0[i] >= lo && t0[i] < hi).collect();
        if !fit.is_empty() && !pred.is_empty() {
            out.push((fit, pred));
        }
    }
    out
}

/// The one source of randomness of the suite (a random split on request), seeded from the
/// config.
pub use t0_core::rng::SplitMix;

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Horizon {
        Horizon::try_from(s.to_string()).unwrap()
    }

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn blocks_are_in_time_order_and_embargoed() {
        // 20 daily T0s, 3 rows each, a 2-day horizon.
        let t0: Vec<i64> = (0..20).flat_map(|d| [d * DAY; 3]).collect();
        let f = Fractions { calibration: 0.1, validation: 0.2, test: 0.2 };
        let b = chronological(&t0, f, &[h("2 days")]).unwrap();
        let first = |blk: Block| t0[b.iter().position(|x| *x == blk).unwrap()];
        let last = |blk: Block| t0[b.iter().rposition(|x| *x == blk).unwrap()];
        assert!(last(Block::Train) < first(Block::Calibration));
        assert!(last(Block::Calibration) < first(Block::Validation));
        assert!(last(Block::Validation) < first(Block::Test));
        // Every training label matures by the start of the evaluation period.
        assert!(last(Block::Train) + 2 * DAY <= first(Block::Calibration));
        // Exactly one T0 (3 rows) embargoed: a 2-day horizon drops the T0 one day before.
        assert_eq!(b.iter().filter(|x| **x == Block::Embargo).count(), 3);
        // A T0 is never split across blocks.
        for w in t0.windows(2).zip(b.windows(2)) {
            if w.0[0] == w.0[1] {
                assert_eq!(w.1[0], w.1[1]);
            }
        }
    }

    #[test]
    fn calendar_years_and_too_long_horizons() {
        // Yearly T0s with a 1-year horizon: nothing embargoed (matures exactly at the next).
        let years: Vec<i64> = (2000..2012)
            .map(|y| {
                chrono::NaiveDate::from_ymd_opt(y, 1, 1)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
                    .and_utc()
                    .timestamp_micros()
            })
            .collect();
        let f = Fractions { calibration: 0.1, validation: 0.15, test: 0.15 };
        let b = chronological(&years, f, &[h("1 year")]).unwrap();
        assert!(!b.contains(&Block::Embargo), "{b:?}");
        let err = chronological(&years, f, &[h("10 years")]).unwrap_err();
        assert!(err.contains("empty after the embargo"), "{err}");
        assert!(chronological(&years[..3], f, &[]).unwrap_err().contains("at least 4"));
    }

    #[test]
    fn expanding_folds_never_look_ahead() {
        let t0: Vec<i64> = (0..30).map(|d| d * DAY).collect();
        let rows: Vec<usize> = (0..30).collect();
        let folds = expanding_folds(&t0, &rows, 4, &[h("3 days")]);
        assert_eq!(folds.len(), 4);
        for (fit, pred) in &folds {
            let first_pred = pred.iter().map(|&i| t0[i]).min().unwrap();
            assert!(fit.iter().all(|&i| t0[i] + 3 * DAY <= first_pred));
        }
    }
}
