//! `acquire generate`: a seeded, deterministic clips dataset (channels, short videos, irregular
//! snapshots with heavy-tailed growth, removals, titles whose words carry signal) with a few
//! deliberate defects so audit and heal have real work. Its CSVs go through the same ingest
//! path as user data.

use std::fmt::Write as _;
use std::path::Path;

use t0_core::{Error, Result};

/// splitmix64: the single source of randomness of the generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub entities: u64,
    pub snapshots: u32,
    pub seed: u64,
    /// Fraction of clips given a counter regression in one snapshot.
    pub regressions: f64,
    /// Fraction of snapshot rows written twice.
    pub duplicates: f64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { entities: 200, snapshots: 8, seed: 7, regressions: 0.03, duplicates: 0.01 }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenerateSummary {
    pub channels: u64,
    pub clips: u64,
    pub observations: u64,
    pub events: u64,
    pub artifacts: u64,
    pub injected_regressions: u64,
    pub injected_duplicates: u64,
}

const EPOCH: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const SIGNAL: &[&str] = &["epic", "viral", "insane", "secret", "challenge", "reveal"];
const NEUTRAL: &[&str] =
    &["daily", "vlog", "update", "notes", "morning", "recap", "walk", "garden", "kitchen", "study"];

fn ts(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .expect("generator times are in range")
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Write `entities.csv`, `observations.csv`, `events.csv` and `artifacts.csv` into `out`.
pub fn generate(out: &Path, opt: &GenerateOptions) -> Result<GenerateSummary> {
    if opt.entities == 0 || opt.snapshots == 0 {
        return Err(Error::Usage("--entities and --snapshots must be at least 1".into()));
    }
    let mut rng = Rng::new(opt.seed);
    let mut s = GenerateSummary::default();
    let (mut ent, mut obs, mut evt, mut art) = (String::new(), String::new(), String::new(), String::new());
    ent.push_str("entity_id,kind,parent_id,created_at\n");
    obs.push_str("entity_id,observed_at,views,likes,comments\n");
    evt.push_str("entity_id,event_type,value,observed_at\n");
    art.push_str("entity_id,kind,text,observed_at\n");
    let channels = (opt.entities / 10).max(1);
    let mut channel_quality = Vec::new();
    for c in 0..channels {
        let created = EPOCH - 86_400 * (30 + rng.below(300) as i64);
        writeln!(ent, "ch{c:06},channel,,{}", ts(created)).unwrap();
        channel_quality.push(rng.normal() * 0.6);
        s.channels += 1;
    }
    for i in 0..opt.entities {
        let id = format!("clip{i:07}");
        let ch = rng.below(channels) as usize;
        let created = EPOCH + (rng.uniform() * 60.0 * 86_400.0) as i64;
        writeln!(ent, "{id},clip,ch{ch:06},{}", ts(created)).unwrap();
        s.clips += 1;
        // log-normal popularity with a channel effect; a few viral outliers.
        let mut log_pop = 6.0 + channel_quality[ch] + rng.normal() * 1.3;
        let viral = rng.uniform() < 0.02;
        if viral {
            log_pop += 3.0;
        }
        let pop = log_pop.exp();
        let like_rate = 0.02 + 0.05 * rng.uniform();
        let tau_h = 12.0 + 60.0 * rng.uniform();
        // Title: signal words appear more often for popular clips.
        let mut words = Vec::new();
        for _ in 0..4 {
            let p_signal = (0.08 + (log_pop - 6.0) * 0.12).clamp(0.02, 0.9);
            if rng.uniform() < p_signal {
                words.push(SIGNAL[rng.below(SIGNAL.len() as u64) as usize]);
            } else {
                words.push(NEUTRAL[rng.below(NEUTRAL.len() as u64) as usize]);
            }
        }
        writeln!(art, "{id},title,{},{}", words.join(" "), ts(created)).unwrap();
        s.artifacts += 1;
        let removed_at = (rng.uniform() < 0.03).then(|| created + (3600.0 * (24.0 + 400.0 * rng.uniform())) as i64);
        if let Some(r) = removed_at {
            writeln!(evt, "{id},removed,,{}", ts(r)).unwrap();
            s.events += 1;
        }
        let regress_at =
            (rng.uniform() < opt.regressions).then(|| 1 + rng.below(opt.snapshots.max(2) as u64 - 1) as u32);
        let mut t = created;
        let mut last_views = 0i64;
        for k in 0..opt.snapshots {
            // Irregular captures: frequent early, sparse later (covers ~3 weeks at 8 snapshots).
            t += (3600.0 * (2.0 + 10.0 * rng.uniform()) * (1.0 + k as f64).powf(1.4)) as i64;
            if removed_at.is_some_and(|r| t > r) {
                break;
            }
            let age_h = (t - created) as f64 / 3600.0;
            let saturation = 1.0 - (-age_h / tau_h).exp();
            let noise = (rng.normal() * 0.05).exp();
            let mut views = ((pop * saturation * noise) as i64).max(last_views);
            last_views = views;
            if regress_at == Some(k) {
                views = views * 7 / 10; // a counter regression: the platform reported fewer views
                s.injected_regressions += 1;
            }
            let likes = (views as f64 * like_rate) as i64;
            let comments = likes / 10;
            let line = format!("{id},{},{views},{likes},{comments}\n", ts(t));
            obs.push_str(&line);
            s.observations += 1;
            if rng.uniform() < opt.duplicates {
                obs.push_str(&line);
                s.injected_duplicates += 1;
            }
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    for (name, body) in [("entities.csv", ent), ("observations.csv", obs), ("events.csv", evt), ("artifacts.csv", art)]
    {
        t0_core::fsio::write_atomic(&out.join(name), body.as_bytes())?;
    }
    Ok(s)
}
