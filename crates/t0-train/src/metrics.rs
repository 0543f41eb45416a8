//! Metrics, each written to agree with the peer named beside it (tests/suite.rs checks the
//! ones with a committed reference).

/// Root mean squared error.
pub fn rmse(p: &[f64], y: &[f64]) -> f64 {
    (p.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / p.len().max(1) as f64).sqrt()
}

pub fn mae(p: &[f64], y: &[f64]) -> f64 {
    p.iter().zip(y).map(|(a, b)| (a - b).abs()).sum::<f64>() / p.len().max(1) as f64
}

/// Coefficient of determination (scikit-learn's r2_score).
pub fn r2(p: &[f64], y: &[f64]) -> f64 {
    let m = y.iter().sum::<f64>() / y.len().max(1) as f64;
    let ss_tot: f64 = y.iter().map(|v| (v - m).powi(2)).sum();
    let ss_res: f64 = p.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum();
    if ss_tot == 0.0 { f64::NAN } else { 1.0 - ss_res / ss_tot }
}

/// Average ranks (1-based; ties share their mean rank).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]).then(a.cmp(&b)));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 { f64::NAN } else { cov / (va * vb).sqrt() }
}

/// Spearman rank correlation (scipy.stats.spearmanr).
pub fn spearman(p: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(p), &ranks(y))
}

/// NDCG@k within each group (T0), averaged over groups of 2 or more rows; gains are the
/// targets shifted to start at 0 within the group.
pub fn ndcg_at(k: usize, groups: &[i64], p: &[f64], y: &[f64]) -> f64 {
    let mut by: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for (i, g) in groups.iter().enumerate() {
        by.entry(*g).or_default().push(i);
    }
    let mut total = 0.0;
    let mut count = 0;
    for rows in by.values().filter(|r| r.len() >= 2) {
        let lo = rows.iter().map(|&i| y[i]).fold(f64::INFINITY, f64::min);
        let dcg = |order: &[usize]| -> f64 {
            order.iter().take(k).enumerate().map(|(r, &i)| (y[i] - lo) / ((r + 2) as f64).log2()).sum()
        };
        let mut by_pred = rows.clone();
        by_pred.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        let mut ideal = rows.clone();
        ideal.sort_by(|&a, &b| y[b].total_cmp(&y[a]).then(a.cmp(&b)));
        let best = dcg(&ideal);
        if best > 0.0 {
            total += dcg(&by_pred) / best;
            count += 1;
        }
    }
    if count == 0 { f64::NAN } else { total / count as f64 }
}

/// ROC-AUC (scikit-learn's roc_auc_score): the Mann-Whitney statistic with tied scores
/// counted half.
pub fn roc_auc(score: &[f64], y: &[f64]) -> f64 {
    let r = ranks(score);
    let pos = y.iter().filter(|v| **v > 0.5).count() as f64;
    let neg = y.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    let sum: f64 = r.iter().zip(y).filter(|(_, y)| **y > 0.5).map(|(r, _)| r).sum();
    (sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Average precision (scikit-learn's average_precision_score, the PR-AUC summary).
pub fn average_precision(score: &[f64], y: &[f64]) -> f64 {
    let mut idx: Vec<usize> = (0..score.len()).collect();
    idx.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
    let pos = y.iter().filter(|v| **v > 0.5).count() as f64;
    if pos == 0.0 {
        return f64::NAN;
    }
    let (mut tp, mut fp, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        // All rows tied at this score enter together.
        let s = score[idx[i]];
        while i < idx.len() && score[idx[i]] == s {
            if y[idx[i]] > 0.5 {
                tp += 1.0
            } else {
                fp += 1.0
            }
            i += 1;
        }
        let recall = tp / pos;
        ap += (recall - last_recall) * tp / (tp + fp);
        last_recall = recall;
    }
    ap
}

/// (precision, recall, F1) of `score >= threshold`.
pub fn prf(score: &[f64], y: &[f64], threshold: f64) -> (f64, f64, f64) {
    let (mut tp, mut fp, mut fneg) = (0.0, 0.0, 0.0);
    for (s, y) in score.iter().zip(y) {
        match (*s >= threshold, *y > 0.5) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fneg += 1.0,
            _ => {}
        }
    }
    let p = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
    let r = if tp + fneg > 0.0 { tp / (tp + fneg) } else { 0.0 };
    let f = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
    (p, r, f)
}

/// Harrell's concordance as lifelines' `concordance_index(time, score, event)`: `score` is
/// larger for longer survival; a pair is comparable when the earlier time is an event (an
/// event tied with a censored time counts as earlier); tied scores count half. O(n log n).
pub fn harrell_c(time: &[f64], event: &[bool], score: &[f64]) -> f64 {
    let mut levels: Vec<f64> = score.to_vec();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    let level = |s: f64| levels.partition_point(|v| *v < s);
    let mut tree = vec![0u64; levels.len() + 1];
    let add = |tree: &mut Vec<u64>, mut i: usize| {
        i += 1;
        while i < tree.len() {
            tree[i] += 1;
            i += i & i.wrapping_neg();
        }
    };
    let below = |tree: &Vec<u64>, mut i: usize| -> u64 {
        // Count of inserted levels < i.
        let mut s = 0;
        while i > 0 {
            s += tree[i];
            i -= i & i.wrapping_neg();
        }
        s
    };
    let mut order: Vec<usize> = (0..time.len()).collect();
    order.sort_by(|&a, &b| time[a].total_cmp(&time[b]).then(event[b].cmp(&event[a])));
    let (mut pairs, mut correct, mut tied, mut inserted) = (0u64, 0u64, 0u64, 0u64);
    let mut i = 0;
    while i < order.len() {
        // Events at one time first; they are compared with earlier events only, then join.
        let t = time[order[i]];
        let mut j = i;
        while j < order.len() && time[order[j]] == t && event[order[j]] {
            j += 1;
        }
        for &k in &order[i..j] {
            let l = level(score[k]);
            pairs += inserted;
            correct += below(&tree, l);
            tied += below(&tree, l + 1) - below(&tree, l);
        }
        // Censored rows at this time are compared with every event up to and including it.
        for &k in &order[i..j] {
            add(&mut tree, level(score[k]));
            inserted += 1;
        }
        let mut c = j;
        while c < order.len() && time[order[c]] == t {
            let l = level(score[order[c]]);
            pairs += inserted;
            correct += below(&tree, l);
            tied += below(&tree, l + 1) - below(&tree, l);
            c += 1;
        }
        i = c;
    }
    if pairs == 0 { f64::NAN } else { (correct as f64 + 0.5 * tied as f64) / pairs as f64 }
}

/// Kaplan-Meier estimate of the censoring survival G(t) (scikit-survival's
/// `CensoringDistributionEstimator`): a step function over the distinct training times.
#[derive(Debug, Clone)]
pub struct CensoringKm {
    times: Vec<f64>,
    prob: Vec<f64>,
}

impl CensoringKm {
    pub fn fit(time: &[f64], event: &[bool]) -> CensoringKm {
        let mut order: Vec<usize> = (0..time.len()).collect();
        order.sort_by(|&a, &b| time[a].total_cmp(&time[b]));
        let mut times = Vec::new();
        let mut prob = Vec::new();
        let mut at_risk = time.len() as f64;
        let mut g = 1.0;
        let mut i = 0;
        while i < order.len() {
            let t = time[order[i]];
            let (mut ev, mut cens) = (0.0, 0.0);
            while i < order.len() && time[order[i]] == t {
                if event[order[i]] {
                    ev += 1.0
                } else {
                    cens += 1.0
                }
                i += 1;
            }
            let r = at_risk - ev;
            if cens > 0.0 && r > 0.0 {
                g *= 1.0 - cens / r;
            }
            times.push(t);
            prob.push(g);
            at_risk -= ev + cens;
        }
        if event.iter().all(|e| *e) {
            prob.iter_mut().for_each(|p| *p = 1.0);
        }
        CensoringKm { times, prob }
    }

    /// G(t): the value at the last training time <= t (1 before the first).
    pub fn at(&self, t: f64) -> f64 {
        let k = self.times.partition_point(|v| *v <= t);
        if k == 0 { 1.0 } else { self.prob[k - 1] }
    }
}

/// Uno's IPCW concordance (scikit-survival's `concordance_index_ipcw`, truncated at `tau`):
/// `risk` is larger for shorter survival; the censoring distribution comes from the
/// training rows.
pub fn uno_c(cens: &CensoringKm, time: &[f64], event: &[bool], risk: &[f64], tau: f64) -> f64 {
    let mut order: Vec<usize> = (0..time.len()).collect();
    order.sort_by(|&a, &b| time[a].total_cmp(&time[b]).then(a.cmp(&b)));
    let (mut num, mut den) = (0.0, 0.0);
    let n = order.len();
    let mut i = 0;
    while i < n {
        let t = time[order[i]];
        let mut end = i + 1;
        while end < n && time[order[end]] == t {
            end += 1;
        }
        for &a in &order[i..end] {
            if !event[a] || t >= tau {
                continue;
            }
            let g = cens.at(t);
            let w = 1.0 / (g * g);
            // Comparable: every later time, and censored rows at the same time.
            let others = order[end..].iter().chain(order[i..end].iter().filter(|&&b| !event[b]));
            for &b in others {
                den += w;
                if (risk[b] - risk[a]).abs() <= 1e-8 {
                    num += 0.5 * w;
                } else if risk[b] < risk[a] {
                    num += w;
                }
            }
        }
        i = end;
    }
    if den == 0.0 { f64::NAN } else { num / den }
}

/// Integrated Brier score (scikit-survival's `integrated_brier_score`): `surv[i][k]` is the
/// predicted S(times[k]) of row i; trapezoid over `times`, divided by their range.
pub fn integrated_brier(cens: &CensoringKm, time: &[f64], event: &[bool], surv: &[Vec<f64>], times: &[f64]) -> f64 {
    let n = time.len() as f64;
    let bs: Vec<f64> = times
        .iter()
        .enumerate()
        .map(|(k, &t)| {
            let gt = cens.at(t);
            (0..time.len())
                .map(|i| {
                    let s = surv[i][k];
                    if time[i] <= t && event[i] {
                        let g = cens.at(time[i]);
                        if g == 0.0 { 0.0 } else { s * s / g }
                    } else if time[i] > t {
                        (1.0 - s).powi(2) / gt
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
                / n
        })
        .collect();
    if times.len() < 2 {
        return bs.first().copied().unwrap_or(f64::NAN);
    }
    let area: f64 = (1..times.len()).map(|k| 0.5 * (bs[k] + bs[k - 1]) * (times[k] - times[k - 1])).sum();
    area / (times[times.len() - 1] - times[0])
}

/// Kaplan–Meier estimate of S(t) (lifelines' `KaplanMeierFitter`): the product over event
/// times `u <= t` of `1 - d(u) / n(u)`, with `n(u)` the rows whose time is at least `u`.
pub fn kaplan_meier(time: &[f64], event: &[bool], t: f64) -> f64 {
    let mut order: Vec<usize> = (0..time.len()).collect();
    order.sort_by(|&a, &b| time[a].total_cmp(&time[b]));
    let (mut s, mut at_risk, mut i) = (1.0, time.len() as f64, 0);
    while i < order.len() && time[order[i]] <= t {
        let u = time[order[i]];
        let (mut d, mut n) = (0.0, 0.0);
        while i < order.len() && time[order[i]] == u {
            d += f64::from(u8::from(event[order[i]]));
            n += 1.0;
            i += 1;
        }
        if at_risk > 0.0 {
            s *= 1.0 - d / at_risk;
        }
        at_risk -= n;
    }
    s
}

/// D-calibration (Haider et al. 2020, "Effective ways to build and evaluate individual
/// survival distributions", JMLR 21(85)): each row's predicted survival at its own time,
/// `s_at_time`, should be uniform on [0, 1] over the rows. Ten equal bins of survival
/// probability from 1 down to 0; an event adds 1 to the bin holding its S; a censored row
/// with S = s spreads its unit over the bins at or below s (the part of its own bin below s,
/// and 1/(10 s) to each lower bin). Returns (chi-square statistic against uniform, p-value
/// with 9 degrees of freedom); NaN without rows.
pub fn d_calibration(s_at_time: &[f64], event: &[bool]) -> (f64, f64) {
    const BINS: usize = 10;
    let width = 1.0 / BINS as f64;
    let bin_of = |s: f64| (((1.0 - s) / width).floor() as usize).min(BINS - 1);
    let mut hist = [0.0; BINS];
    for (&s, &e) in s_at_time.iter().zip(event) {
        let s = s.clamp(0.0, 1.0);
        let k = bin_of(s);
        if e {
            hist[k] += 1.0;
        } else if s == 0.0 {
            hist[BINS - 1] += 1.0;
        } else if s == 1.0 {
            hist.iter_mut().for_each(|h| *h += width);
        } else {
            let lower = 1.0 - (k + 1) as f64 * width;
            hist[k] += (s - lower) / s;
            hist[k + 1..].iter_mut().for_each(|h| *h += width / s);
        }
    }
    let n = s_at_time.len() as f64;
    if n == 0.0 {
        return (f64::NAN, f64::NAN);
    }
    let expected = n / BINS as f64;
    let chi2: f64 = hist.iter().map(|h| (h - expected).powi(2) / expected).sum();
    (chi2, gamma_q((BINS - 1) as f64 / 2.0, chi2 / 2.0))
}

/// The regularised upper incomplete gamma Q(a, x) (the chi-square tail): one minus the series
/// for P when x < a + 1, else the continued fraction (Lentz), so small tails keep their digits.
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let log_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        return 1.0 - (sum.ln() + log_prefix).exp();
    }
    let tiny = 1e-300;
    let mut b = x + 1.0 - a;
    let (mut c, mut d) = (1.0 / tiny, 1.0 / b);
    let mut h = d;
    for i in 1..1000 {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        d = if d.abs() < tiny { tiny } else { d };
        c = b + an / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (h.ln() + log_prefix).exp()
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine coefficients; ~15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let sum = G[1..].iter().enumerate().fold(G[0], |acc, (i, g)| acc + g / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}
