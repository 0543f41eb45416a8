//! Audio features with librosa's conventions: decode WAV (8/16/24/32-bit PCM or float), mix
//! to mono, resample to 16 kHz, then per-frame features over a centred STFT (n_fft 2048, hop
//! 512, periodic Hann, zero padding), summarised by their mean and population std over frames.
//!
//! Vector (`AUDIO_DIM` = 126 values, in this order):
//! - `0..40`    MFCC 1-20 mean, then std (librosa.feature.mfcc: 128 Slaney mel bands of the
//!   power spectrum, power_to_db with top_db 80, orthonormal DCT-II)
//! - `40..120`  40-band log-mel (dB, top_db 80) mean, then std
//! - `120..122` RMS mean, std (frames of 2048, zero-padded centre)
//! - `122..124` zero-crossing rate mean, std (edge-padded centre, as librosa)
//! - `124..126` spectral centroid (Hz) mean, std
//!
//! The resampler is a polyphase Kaiser-windowed sinc filter. Its default design (`HIGH`) is
//! long and sharp like librosa's default soxr "HQ"; with scipy's `resample_poly` design
//! (`POLYPHASE`) the features equal librosa's `res_type="polyphase"` load to 1e-4. The
//! equality test states the tolerances against both.

use std::f64::consts::PI;
use std::sync::OnceLock;

use realfft::RealFftPlanner;

pub const SAMPLE_RATE: u32 = 16_000;
pub const N_FFT: usize = 2048;
pub const HOP: usize = 512;
pub const N_MFCC: usize = 20;
pub const N_MELS: usize = 40;
const MFCC_MELS: usize = 128;
pub const AUDIO_DIM: usize = 2 * N_MFCC + 2 * N_MELS + 6;
/// Longest audio read (seconds at 16 kHz); longer clips are cut and the cut is reported.
pub const MAX_SECONDS: usize = 600;

/// Decoded mono audio at its own rate.
pub struct Mono {
    pub rate: u32,
    pub samples: Vec<f32>,
}

/// The sample rates read: telephone audio to studio masters.
pub const MIN_RATE: u32 = 1_000;
pub const MAX_RATE: u32 = 384_000;

/// Decode a WAV file's bytes into mono f32 in [-1, 1].
pub fn decode_wav(bytes: &[u8]) -> Result<Mono, String> {
    let mut r = hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(|e| format!("wav: {e}"))?;
    let spec = r.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err("wav: no channels or a zero sample rate".into());
    }
    // The resampler's filter grows with the rate: a forged header (4 GHz) would exhaust memory.
    if !(MIN_RATE..=MAX_RATE).contains(&spec.sample_rate) {
        return Err(format!("wav: sample rate {} Hz is outside {MIN_RATE}..={MAX_RATE} Hz", spec.sample_rate));
    }
    let ch = spec.channels as usize;
    let inter: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<_, _>>().map_err(|e| format!("wav: {e}"))?,
        hound::SampleFormat::Int if !(1..=32).contains(&spec.bits_per_sample) => {
            return Err(format!("wav: {} bits per integer sample", spec.bits_per_sample));
        }
        hound::SampleFormat::Int => {
            let scale = (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.map(|v| v as f32 / scale))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("wav: {e}"))?
        }
    };
    let samples =
        if ch == 1 { inter } else { inter.chunks_exact(ch).map(|f| f.iter().sum::<f32>() / ch as f32).collect() };
    Ok(Mono { rate: spec.sample_rate, samples })
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Zeroth-order modified Bessel function of the first kind (series).
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, mut k) = (1.0, 1.0, 1.0);
    loop {
        term *= (x / (2.0 * k)) * (x / (2.0 * k));
        sum += term;
        if term < sum * 1e-17 {
            return sum;
        }
        k += 1.0;
    }
}

/// A Kaiser-windowed sinc design: half length in units of max(up, down), cutoff as a
/// fraction of the lower Nyquist frequency, Kaiser beta.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    pub half_per_rate: usize,
    pub cutoff: f64,
    pub beta: f64,
}

/// scipy.signal.resample_poly's default design (librosa's `res_type="polyphase"`).
pub const POLYPHASE: Filter = Filter { half_per_rate: 10, cutoff: 1.0, beta: 5.0 };
/// The default: a long, sharp filter near librosa's default soxr "HQ" (passband to ~91% of
/// Nyquist, ~120 dB stopband).
pub const HIGH: Filter = Filter { half_per_rate: 90, cutoff: 0.9565, beta: 12.3 };

/// Resample by the rational factor `to / from` with the `HIGH` filter.
pub fn resample(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    resample_with(x, from, to, HIGH)
}

/// Resample by the rational factor `to / from` with a polyphase Kaiser-windowed sinc FIR.
pub fn resample_with(x: &[f32], from: u32, to: u32, filter: Filter) -> Vec<f32> {
    if from == to || x.is_empty() {
        return x.to_vec();
    }
    let g = gcd(from as u64, to as u64);
    let (up, down) = ((to as u64 / g) as usize, (from as u64 / g) as usize);
    let max_rate = up.max(down);
    let half = filter.half_per_rate * max_rate;
    let taps = 2 * half + 1;
    let fc = filter.cutoff / max_rate as f64; // cutoff relative to the input's Nyquist
    let beta = filter.beta;
    let i0b = bessel_i0(beta);
    let mut h: Vec<f64> = (0..taps)
        .map(|n| {
            let m = n as f64 - half as f64;
            let sinc = if m == 0.0 { fc } else { (PI * fc * m).sin() / (PI * m) };
            let r = m / half as f64;
            sinc * bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0b
        })
        .collect();
    let s: f64 = h.iter().sum();
    h.iter_mut().for_each(|v| *v = *v / s * up as f64);
    let n_out = (x.len() * up).div_ceil(down);
    let mut out = Vec::with_capacity(n_out);
    for k in 0..n_out {
        // Output k sits at upsampled position k*down; the filter is centred on it.
        let pos = (k * down) as i64;
        let mut acc = 0f64;
        // Upsampled index j = i*up contributes h[pos - j + half].
        let lo = (pos - half as i64).max(0);
        let hi = pos + half as i64;
        let mut i = (lo + up as i64 - 1) / up as i64;
        while (i * up as i64) <= hi {
            let j = i * up as i64;
            if (i as usize) < x.len() {
                acc += x[i as usize] as f64 * h[(pos - j + half as i64) as usize];
            }
            i += 1;
        }
        out.push(acc as f32);
    }
    out
}

fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= min_log_hz { min_log_mel + (f / min_log_hz).ln() / logstep } else { f / f_sp }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel { min_log_hz * (logstep * (m - min_log_mel)).exp() } else { f_sp * m }
}

/// librosa.filters.mel(sr, n_fft, n_mels) with Slaney scale and norm: (n_mels, 1 + n_fft/2).
fn mel_filters(n_mels: usize) -> Vec<Vec<f64>> {
    let sr = SAMPLE_RATE as f64;
    let bins = N_FFT / 2 + 1;
    let fft_f: Vec<f64> = (0..bins).map(|k| k as f64 * sr / N_FFT as f64).collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64)).collect();
    (0..n_mels)
        .map(|i| {
            let (d0, d1) = (mel_f[i + 1] - mel_f[i], mel_f[i + 2] - mel_f[i + 1]);
            let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
            fft_f
                .iter()
                .map(|&f| {
                    let lower = (f - mel_f[i]) / d0;
                    let upper = (mel_f[i + 2] - f) / d1;
                    lower.min(upper).max(0.0) * enorm
                })
                .collect()
        })
        .collect()
}

fn filters(n: usize) -> &'static [Vec<f64>] {
    static F40: OnceLock<Vec<Vec<f64>>> = OnceLock::new();
    static F128: OnceLock<Vec<Vec<f64>>> = OnceLock::new();
    if n == N_MELS { F40.get_or_init(|| mel_filters(N_MELS)) } else { F128.get_or_init(|| mel_filters(MFCC_MELS)) }
}

/// power_to_db(ref=1, amin=1e-10, top_db=80) over a whole (bands x frames) matrix.
fn power_to_db(m: &mut [Vec<f64>]) {
    let mut max = f64::NEG_INFINITY;
    for row in m.iter_mut() {
        for v in row.iter_mut() {
            *v = 10.0 * v.max(1e-10).log10();
            max = max.max(*v);
        }
    }
    for row in m.iter_mut() {
        for v in row.iter_mut() {
            *v = v.max(max - 80.0);
        }
    }
}

fn mean_std(xs: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = xs.clone().count().max(1) as f64;
    let mean = xs.clone().sum::<f64>() / n;
    let var = xs.map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The audio vector (layout in the module docs) of mono samples at `SAMPLE_RATE`.
pub fn features(y: &[f32]) -> Result<Vec<f32>, String> {
    if y.is_empty() {
        return Err("audio: no samples".into());
    }
    let y = &y[..y.len().min(MAX_SECONDS * SAMPLE_RATE as usize)];
    let pad = N_FFT / 2;
    let mut padded = vec![0f64; pad];
    padded.extend(y.iter().map(|&v| v as f64));
    padded.extend(std::iter::repeat_n(0.0, pad));
    let frames = 1 + (padded.len() - N_FFT) / HOP;
    let window: Vec<f64> = (0..N_FFT).map(|n| 0.5 - 0.5 * (2.0 * PI * n as f64 / N_FFT as f64).cos()).collect();
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(N_FFT);
    let bins = N_FFT / 2 + 1;
    let mut power = vec![vec![0f64; frames]; bins];
    let mut centroid = Vec::with_capacity(frames);
    let mut rms = Vec::with_capacity(frames);
    let mut inbuf = fft.make_input_vec();
    let mut spec = fft.make_output_vec();
    for t in 0..frames {
        let frame = &padded[t * HOP..t * HOP + N_FFT];
        for (i, (x, w)) in frame.iter().zip(&window).enumerate() {
            inbuf[i] = x * w;
        }
        fft.process(&mut inbuf, &mut spec).map_err(|e| format!("fft: {e}"))?;
        let (mut num, mut den) = (0.0, 0.0);
        for (k, c) in spec.iter().enumerate() {
            let p = c.norm_sqr();
            power[k][t] = p;
            let mag = p.sqrt();
            num += mag * k as f64 * SAMPLE_RATE as f64 / N_FFT as f64;
            den += mag;
        }
        centroid.push(if den > f64::MIN_POSITIVE { num / den } else { 0.0 });
        rms.push((frame.iter().map(|v| v * v).sum::<f64>() / N_FFT as f64).sqrt());
    }
    let mel = |n: usize| -> Vec<Vec<f64>> {
        let fb = filters(n);
        let mut m: Vec<Vec<f64>> = fb
            .iter()
            .map(|f| (0..frames).map(|t| f.iter().enumerate().map(|(k, w)| w * power[k][t]).sum()).collect())
            .collect();
        power_to_db(&mut m);
        m
    };
    let logmel = mel(N_MELS);
    let mel128 = mel(MFCC_MELS);
    // Orthonormal DCT-II over the 128 bands, first 20 coefficients.
    let nm = MFCC_MELS as f64;
    let mfcc: Vec<Vec<f64>> = (0..N_MFCC)
        .map(|k| {
            let scale = if k == 0 { (1.0 / nm).sqrt() } else { (2.0 / nm).sqrt() };
            let basis: Vec<f64> =
                (0..MFCC_MELS).map(|n| scale * (PI * k as f64 * (2.0 * n as f64 + 1.0) / (2.0 * nm)).cos()).collect();
            (0..frames).map(|t| basis.iter().zip(&mel128).map(|(b, row)| b * row[t]).sum()).collect()
        })
        .collect();
    // Zero-crossing rate: edge-padded frames; a sample within 1e-10 of zero counts as positive.
    let mut ye: Vec<f64> = vec![y[0] as f64; pad];
    ye.extend(y.iter().map(|&v| v as f64));
    ye.extend(std::iter::repeat_n(*y.last().expect("non-empty") as f64, pad));
    let zframes = 1 + (ye.len() - N_FFT) / HOP;
    let neg = |v: f64| v < 0.0 && v.abs() > 1e-10;
    let zcr: Vec<f64> = (0..zframes)
        .map(|t| {
            let f = &ye[t * HOP..t * HOP + N_FFT];
            f.windows(2).filter(|w| neg(w[0]) != neg(w[1])).count() as f64 / N_FFT as f64
        })
        .collect();
    let mut v = Vec::with_capacity(AUDIO_DIM);
    let push_group = |v: &mut Vec<f32>, rows: &[Vec<f64>]| {
        let stats: Vec<(f64, f64)> = rows.iter().map(|r| mean_std(r.iter().copied())).collect();
        v.extend(stats.iter().map(|s| s.0 as f32));
        v.extend(stats.iter().map(|s| s.1 as f32));
    };
    push_group(&mut v, &mfcc);
    push_group(&mut v, &logmel);
    for series in [&rms, &zcr, &centroid] {
        let (m, s) = mean_std(series.iter().copied());
        v.push(m as f32);
        v.push(s as f32);
    }
    debug_assert_eq!(v.len(), AUDIO_DIM);
    Ok(v)
}

/// Decode, mix down, resample to 16 kHz (`filter`) and extract the audio vector.
pub fn extract_wav_with(bytes: &[u8], filter: Filter) -> Result<Vec<f32>, String> {
    let m = decode_wav(bytes)?;
    features(&resample_with(&m.samples, m.rate, SAMPLE_RATE, filter))
}

/// Decode, mix down, resample to 16 kHz and extract the audio vector.
pub fn extract_wav(bytes: &[u8]) -> Result<Vec<f32>, String> {
    extract_wav_with(bytes, HIGH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resample_keeps_a_low_tone() {
        let x: Vec<f32> = (0..48_000).map(|i| (2.0 * PI * 440.0 * i as f64 / 48_000.0).sin() as f32).collect();
        let y = resample(&x, 48_000, 16_000);
        assert_eq!(y.len(), 16_000);
        for (k, v) in y.iter().enumerate().skip(100).take(15_800) {
            let want = (2.0 * PI * 440.0 * k as f64 / 16_000.0).sin() as f32;
            assert!((v - want).abs() < 2e-3, "sample {k}: {v} vs {want}");
        }
    }

    #[test]
    fn silence_and_tone_features() {
        let v = features(&vec![0.0; 16_000]).unwrap();
        assert_eq!(v.len(), AUDIO_DIM);
        assert!(v.iter().all(|x| x.is_finite()));
        let tone: Vec<f32> = (0..16_000).map(|i| (2.0 * PI * 1000.0 * i as f64 / 16_000.0).sin() as f32).collect();
        let t = features(&tone).unwrap();
        // The centroid of a 1 kHz tone sits near 1 kHz; its RMS near 1/sqrt(2).
        assert!((t[124] - 1000.0).abs() < 60.0, "centroid {}", t[124]);
        assert!((t[120] - std::f32::consts::FRAC_1_SQRT_2).abs() < 0.05, "rms {}", t[120]);
    }
}
