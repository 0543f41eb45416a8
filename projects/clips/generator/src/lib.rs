//! `acquire generate`: a seeded, deterministic clips dataset written as source files, so it
//! enters through the same ingest path as user data: channels and short videos, snapshots at
//! irregular times with heavy-tailed growth (log-normal popularity, saturation, viral
//! outliers), removals, titles whose words carry signal, PNG thumbnails and WAV clips whose
//! content follows popularity, channel->clip interactions, a status per snapshot (live, then
//! removed for removed clips), and optional defects (duplicates, counter regressions,
//! late-arriving rows, future timestamps, orphans, near-duplicate stale captures, revived
//! removed clips, misspelled statuses, likes above views) for audit and heal.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use t0_core::{Error, Progress, Result};

/// splitmix64: the single source of randomness of the generator.
pub use t0_core::rng::SplitMix as Rng;

/// The generator's knobs (also the flags of `acquire generate`).
#[derive(Debug, Clone, serde::Serialize, clap::Args)]
pub struct GenerateOptions {
    /// Number of clips (channels are a tenth of it).
    #[arg(long, default_value_t = 200)]
    pub entities: u64,
    /// Snapshots per clip (fewer for removed clips).
    #[arg(long, default_value_t = 8)]
    pub snapshots: u32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Clips (the first N) that get a PNG thumbnail and a WAV clip.
    #[arg(long, default_value_t = 20)]
    pub media: u64,
    /// Fraction of clips with a counter regression in one snapshot.
    #[arg(long, default_value_t = 0.03)]
    pub regressions: f64,
    /// Fraction of snapshot rows written twice.
    #[arg(long, default_value_t = 0.01)]
    pub duplicates: f64,
    /// Fraction of snapshot rows that arrive days late (`available_at` well after `observed_at`).
    #[arg(long, default_value_t = 0.02)]
    pub late: f64,
    /// Fraction of snapshot rows stamped a year in the future (a crawler clock fault).
    #[arg(long, default_value_t = 0.0)]
    pub future: f64,
    /// Fraction of extra snapshot rows for clips that do not exist.
    #[arg(long, default_value_t = 0.0)]
    pub orphans: f64,
    /// Fraction of snapshot rows captured a second time seconds later from a stale cache
    /// (same counters, status `stale`).
    #[arg(long, default_value_t = 0.01)]
    pub near_duplicates: f64,
    /// Fraction of clips removed (a `removed` event 1 to 17 days after creation; later
    /// snapshots say `removed`): the time-to-event label's events.
    #[arg(long, default_value_t = 0.03)]
    pub removals: f64,
    /// Fraction of removed clips that get one more snapshot claiming `live` (a revival).
    #[arg(long, default_value_t = 0.5)]
    pub revivals: f64,
    /// Fraction of snapshot rows whose status is spelled off-vocabulary (`LIVE`, `Active`).
    #[arg(long, default_value_t = 0.01)]
    pub status_noise: f64,
    /// Fraction of snapshot rows whose likes exceed their views (a counter mix-up).
    #[arg(long, default_value_t = 0.005)]
    pub like_spikes: f64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        // The flags' defaults, so the library and the command agree.
        <GenerateOptions as clap::FromArgMatches>::from_arg_matches(
            &<GenerateOptions as clap::Args>::augment_args(clap::Command::new("generate"))
                .get_matches_from(["generate"]),
        )
        .expect("defaults parse")
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenerateSummary {
    pub channels: u64,
    pub clips: u64,
    pub observations: u64,
    pub events: u64,
    pub interactions: u64,
    pub artifacts: u64,
    pub media_files: u64,
    pub injected_regressions: u64,
    pub injected_duplicates: u64,
    pub injected_late: u64,
    pub injected_future: u64,
    pub injected_orphans: u64,
    pub injected_near_duplicates: u64,
    pub injected_revivals: u64,
    pub injected_status_noise: u64,
    pub injected_like_spikes: u64,
}

impl GenerateSummary {
    /// The one-line human summary `acquire generate` prints: the domain's words live here,
    /// with the example they describe.
    pub fn describe(&self, out: &std::path::Path) -> String {
        format!(
            "wrote {} clips, {} channels, {} observations, {} media files to {}",
            self.clips,
            self.channels,
            self.observations,
            self.media_files,
            out.display()
        )
    }
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

struct Out {
    path: std::path::PathBuf,
    w: BufWriter<File>,
}

impl Out {
    fn create(dir: &Path, name: &str, header: &str) -> Result<Self> {
        let path = dir.join(name);
        let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut o = Out { path, w: BufWriter::with_capacity(1 << 20, f) };
        o.line(format_args!("{header}"))?;
        Ok(o)
    }
    fn line(&mut self, args: std::fmt::Arguments) -> Result<()> {
        self.w.write_fmt(args).and_then(|_| self.w.write_all(b"\n")).map_err(|e| Error::io(&self.path, e))
    }
    fn close(mut self) -> Result<()> {
        self.w.flush().map_err(|e| Error::io(&self.path, e))?;
        self.w
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?
            .sync_all()
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// A 32x32 thumbnail: warmer and brighter for more popular clips, with seeded texture.
fn thumbnail(path: &Path, log_pop: f64, rng: &mut Rng) -> Result<()> {
    let heat = ((log_pop - 3.0) / 8.0).clamp(0.0, 1.0);
    let mut data = Vec::with_capacity(32 * 32 * 3);
    for y in 0..32u32 {
        for x in 0..32u32 {
            let n = rng.unit() * 40.0;
            let r = 60.0 + 180.0 * heat + n;
            let g = 80.0 + 60.0 * ((x + y) as f64 / 62.0) + n;
            let b = 200.0 - 150.0 * heat + n;
            data.extend([r, g, b].map(|v| v.clamp(0.0, 255.0) as u8));
        }
    }
    let f = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = png::Encoder::new(BufWriter::new(f), 32, 32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| Error::internal(path.display().to_string(), e))?;
    w.write_image_data(&data).map_err(|e| Error::internal(path.display().to_string(), e))?;
    w.finish().map_err(|e| Error::internal(path.display().to_string(), e))
}

/// Half a second of 16-bit mono PCM at 8 kHz: higher-pitched and louder for popular clips.
fn audio(path: &Path, log_pop: f64, rng: &mut Rng) -> Result<()> {
    const RATE: u32 = 8000;
    let n = RATE / 2;
    let heat = ((log_pop - 3.0) / 8.0).clamp(0.0, 1.0);
    let (freq, amp) = (180.0 + 500.0 * heat, 2000.0 + 14000.0 * heat);
    let mut pcm = Vec::with_capacity(n as usize * 2);
    for i in 0..n {
        let t = i as f64 / RATE as f64;
        let v = amp * (2.0 * std::f64::consts::PI * freq * t).sin() + (rng.unit() - 0.5) * 800.0;
        pcm.extend_from_slice(&(v.clamp(-32768.0, 32767.0) as i16).to_le_bytes());
    }
    let mut wav = Vec::with_capacity(44 + pcm.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + pcm.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    wav.extend_from_slice(&pcm);
    std::fs::write(path, wav).map_err(|e| Error::io(path, e))
}

/// Write the dataset into `out`: `entities.csv`, `observations.csv`, `events.csv`,
/// `interactions.csv`, `artifacts.csv` and `media/`.
///
/// Long because: one seeded random stream is drawn in a fixed order across all files; moving
/// draws between functions risks reordering them, which would change every output.
pub fn generate(out: &Path, opt: &GenerateOptions, progress: &dyn Progress) -> Result<GenerateSummary> {
    if opt.entities == 0 || opt.snapshots == 0 {
        return Err(Error::Usage("--entities and --snapshots must be at least 1".into()));
    }
    for (name, p) in [
        ("regressions", opt.regressions),
        ("duplicates", opt.duplicates),
        ("late", opt.late),
        ("future", opt.future),
        ("orphans", opt.orphans),
        ("near-duplicates", opt.near_duplicates),
        ("removals", opt.removals),
        ("revivals", opt.revivals),
        ("status-noise", opt.status_noise),
        ("like-spikes", opt.like_spikes),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::Usage(format!("--{name} is a fraction between 0 and 1, got {p}")));
        }
    }
    let media_dir = out.join("media");
    if opt.media > 0 {
        for d in ["thumbs", "audio"] {
            std::fs::create_dir_all(media_dir.join(d)).map_err(|e| Error::io(media_dir.join(d), e))?;
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut rng = Rng::new(opt.seed);
    let mut s = GenerateSummary::default();
    let mut ent = Out::create(out, "entities.csv", "entity_id,kind,parent_id,created_at,duration_s")?;
    let mut obs =
        Out::create(out, "observations.csv", "entity_id,observed_at,views,likes,comments,available_at,status")?;
    let mut evt = Out::create(out, "events.csv", "entity_id,event_type,value,observed_at")?;
    let mut int = Out::create(out, "interactions.csv", "source_id,target_id,type,value,observed_at")?;
    let mut art = Out::create(out, "artifacts.csv", "entity_id,kind,text,path,observed_at")?;
    let channels = (opt.entities / 10).max(1);
    let mut channel_quality = Vec::with_capacity(channels as usize);
    for c in 0..channels {
        let created = EPOCH - 86_400 * (30 + rng.below(300) as i64);
        ent.line(format_args!("ch{c:06},channel,,{},", ts(created)))?;
        channel_quality.push(rng.normal() * 0.6);
        s.channels += 1;
    }
    progress.phase("generate", Some(opt.entities));
    for i in 0..opt.entities {
        let id = format!("clip{i:07}");
        let ch = rng.below(channels) as usize;
        let created = EPOCH + (rng.unit() * 60.0 * 86_400.0) as i64;
        let duration = 5 + rng.below(55);
        ent.line(format_args!("{id},clip,ch{ch:06},{},{duration}", ts(created)))?;
        s.clips += 1;
        // log-normal popularity with a channel effect; a few viral outliers.
        let mut log_pop = 6.0 + channel_quality[ch] + rng.normal() * 1.3;
        if rng.chance(0.02) {
            log_pop += 3.0;
        }
        let pop = log_pop.exp();
        let like_rate = 0.02 + 0.05 * rng.unit();
        let tau_h = 12.0 + 60.0 * rng.unit();
        // Title: signal words appear more often for popular clips.
        let words: Vec<&str> = (0..4)
            .map(|_| {
                let p_signal = (0.08 + (log_pop - 6.0) * 0.12).clamp(0.02, 0.9);
                if rng.unit() < p_signal {
                    SIGNAL[rng.below(SIGNAL.len() as u64) as usize]
                } else {
                    NEUTRAL[rng.below(NEUTRAL.len() as u64) as usize]
                }
            })
            .collect();
        art.line(format_args!("{id},title,{},,{}", words.join(" "), ts(created)))?;
        s.artifacts += 1;
        if i < opt.media {
            let thumb = format!("media/thumbs/{id}.png");
            thumbnail(&out.join(&thumb), log_pop, &mut rng)?;
            art.line(format_args!("{id},thumbnail,,{thumb},{}", ts(created)))?;
            let wav = format!("media/audio/{id}.wav");
            audio(&out.join(&wav), log_pop, &mut rng)?;
            art.line(format_args!("{id},audio,,{wav},{}", ts(created)))?;
            s.artifacts += 2;
            s.media_files += 2;
        }
        // Another channel promotes the clip, more often when it is popular.
        if rng.chance((0.05 + (log_pop - 6.0) * 0.05).clamp(0.0, 0.8)) {
            let from = rng.below(channels);
            let when = created + (3600.0 * (1.0 + 48.0 * rng.unit())) as i64;
            int.line(format_args!("ch{from:06},{id},promoted,{:.3},{}", rng.unit(), ts(when)))?;
            s.interactions += 1;
        }
        let removed_at = rng.chance(opt.removals).then(|| created + (3600.0 * (24.0 + 400.0 * rng.unit())) as i64);
        if let Some(r) = removed_at {
            evt.line(format_args!("{id},removed,,{}", ts(r)))?;
            s.events += 1;
        }
        let regress_at = rng.chance(opt.regressions).then(|| 1 + rng.below(opt.snapshots.max(2) as u64 - 1) as u32);
        let mut t = created;
        let mut last_views = 0i64;
        let mut last_counts = (0i64, 0i64, 0i64);
        for k in 0..opt.snapshots {
            // Irregular captures: frequent early, sparse later (about 3 weeks at 8 snapshots).
            t += (3600.0 * (2.0 + 10.0 * rng.unit()) * (1.0 + k as f64).powf(1.4)) as i64;
            if removed_at.is_some_and(|r| t > r) {
                // The first capture after the removal sees the clip gone, counters frozen.
                let (v, l, c) = last_counts;
                obs.line(format_args!("{id},{},{v},{l},{c},{},removed", ts(t), ts(t + 3600)))?;
                s.observations += 1;
                if rng.chance(opt.revivals) {
                    // A stale mirror later reports the removed clip as live again.
                    let t2 = t + 3600 * (6 + rng.below(48) as i64);
                    obs.line(format_args!("{id},{},{v},{l},{c},{},live", ts(t2), ts(t2 + 3600)))?;
                    s.observations += 1;
                    s.injected_revivals += 1;
                }
                break;
            }
            let age_h = (t - created) as f64 / 3600.0;
            let saturation = 1.0 - (-age_h / tau_h).exp();
            let noise = (rng.normal() * 0.05).exp();
            let mut views = ((pop * saturation * noise) as i64).max(last_views);
            last_views = views;
            if regress_at == Some(k) {
                views = views * 7 / 10; // the platform reported fewer views than before
                s.injected_regressions += 1;
            }
            let mut likes = (views as f64 * like_rate) as i64;
            let comments = likes / 10;
            last_counts = (views, likes, comments);
            if rng.chance(opt.like_spikes) {
                likes = views + 1 + views / 2; // likes and views swapped by the crawler
                s.injected_like_spikes += 1;
            }
            let mut observed = t;
            let mut available = t + 3600;
            if rng.chance(opt.late) {
                available += 86_400 * (2 + rng.below(8) as i64);
                s.injected_late += 1;
            }
            if rng.chance(opt.future) {
                observed += 365 * 86_400;
                available = observed + 3600;
                s.injected_future += 1;
            }
            let status = if rng.chance(opt.status_noise) {
                s.injected_status_noise += 1;
                ["LIVE", "Active"][rng.below(2) as usize]
            } else {
                "live"
            };
            let line = format!("{id},{},{views},{likes},{comments},{}", ts(observed), ts(available));
            obs.line(format_args!("{line},{status}"))?;
            s.observations += 1;
            if rng.chance(opt.duplicates) {
                obs.line(format_args!("{line},{status}"))?;
                s.injected_duplicates += 1;
            }
            if rng.chance(opt.near_duplicates) {
                let lag = 1 + rng.below(50) as i64;
                let (o2, a2) = (ts(observed + lag), ts(available + lag));
                obs.line(format_args!("{id},{o2},{views},{likes},{comments},{a2},stale"))?;
                s.observations += 1;
                s.injected_near_duplicates += 1;
            }
            if rng.chance(opt.orphans) {
                obs.line(format_args!(
                    "ghost{i:07},{},{views},{likes},{comments},{},live",
                    ts(observed),
                    ts(available)
                ))?;
                s.injected_orphans += 1;
            }
        }
        if i % 4096 == 4095 {
            progress.advance(4096);
        }
    }
    progress.finish();
    for o in [ent, obs, evt, int, art] {
        o.close()?;
    }
    Ok(s)
}
