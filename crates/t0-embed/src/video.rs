//! Video: frames from animated GIF, WebP or PNG (APNG), from a directory of frame images, or
//! from MP4 and other containers through the `ffmpeg` program; up to `MAX_FRAMES` frames
//! sampled evenly.
//!
//! Vector (`STATS_DIM` = 8 statistics, then the image model's pooled features averaged over
//! the sampled frames):
//! - `0..2` mean and std over frames of the grey-level mean (in [0, 1])
//! - `2..4` mean and std over frames of the grey-level standard deviation
//! - `4..6` mean and std over frames of the grey histogram entropy (16 bins, bits)
//! - `6..8` frame-difference motion: mean and max over consecutive sampled frames of the mean
//!   absolute grey difference at 64 x 64
//! - `8..`  mean of the image embedding of the sampled frames

use std::io::Cursor;
use std::path::Path;
use std::process::{Command, Stdio};

use image::{AnimationDecoder, ImageFormat};

use crate::image::{Rgb, grey, resize_bilinear};

pub const MAX_FRAMES: usize = 8;
pub const STATS_DIM: usize = 8;

fn from_frames(frames: image::Frames) -> Result<Vec<Rgb>, String> {
    let all = frames.collect_frames().map_err(|e| format!("video frames: {e}"))?;
    Ok(all
        .into_iter()
        .map(|f| {
            let b = image::DynamicImage::ImageRgba8(f.into_buffer()).to_rgb8();
            Rgb { w: b.width() as usize, h: b.height() as usize, data: b.into_raw() }
        })
        .collect())
}

fn sample(frames: Vec<Rgb>) -> Vec<Rgb> {
    let n = frames.len();
    if n <= MAX_FRAMES {
        return frames;
    }
    let picks: Vec<usize> = (0..MAX_FRAMES).map(|i| i * (n - 1) / (MAX_FRAMES - 1)).collect();
    frames.into_iter().enumerate().filter(|(i, _)| picks.contains(i)).map(|(_, f)| f).collect()
}

/// Split a stream of concatenated PNG images (ffmpeg's image2pipe) into images.
fn split_pngs(bytes: &[u8]) -> Vec<&[u8]> {
    const IEND: &[u8] = b"IEND";
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 8 <= bytes.len() {
        if &bytes[i..i + 4] == IEND {
            let end = (i + 8).min(bytes.len()); // "IEND" + 4-byte CRC
            out.push(&bytes[start..end]);
            start = end;
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

fn via_ffmpeg(path: &Path) -> Result<Vec<Rgb>, String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-vf", "fps=1,scale=224:224", "-frames:v", "64", "-f", "image2pipe", "-c:v", "png", "-"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("video {}: the ffmpeg program is not installed (needed for this container)", path.display())
            } else {
                format!("video {}: ffmpeg: {e}", path.display())
            }
        })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        return Err(format!("video {}: ffmpeg failed: {}", path.display(), msg.trim()));
    }
    split_pngs(&out.stdout).into_iter().map(crate::image::decode).collect()
}

/// The frames of a video file (bytes as stored, `path` for ffmpeg), sampled.
pub fn frames(bytes: &[u8], path: &Path) -> Result<Vec<Rgb>, String> {
    let frames = match image::guess_format(bytes) {
        Ok(ImageFormat::Gif) => from_frames(
            image::codecs::gif::GifDecoder::new(Cursor::new(bytes)).map_err(|e| format!("gif: {e}"))?.into_frames(),
        )?,
        Ok(ImageFormat::WebP) => from_frames(
            image::codecs::webp::WebPDecoder::new(Cursor::new(bytes)).map_err(|e| format!("webp: {e}"))?.into_frames(),
        )?,
        Ok(ImageFormat::Png) => {
            let d = image::codecs::png::PngDecoder::new(Cursor::new(bytes)).map_err(|e| format!("png: {e}"))?;
            if d.is_apng().map_err(|e| format!("png: {e}"))? {
                from_frames(d.apng().map_err(|e| format!("apng: {e}"))?.into_frames())?
            } else {
                vec![crate::image::decode(bytes)?]
            }
        }
        Ok(_) => vec![crate::image::decode(bytes)?],
        Err(_) => via_ffmpeg(path)?,
    };
    if frames.is_empty() {
        return Err("video: no frames".into());
    }
    Ok(sample(frames))
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let m = xs.iter().sum::<f64>() / n;
    (m, (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt())
}

/// The frame statistics (first `STATS_DIM` values of the vector).
pub fn stats(frames: &[Rgb]) -> Vec<f32> {
    let (mut means, mut stds, mut ents) = (Vec::new(), Vec::new(), Vec::new());
    let mut small = Vec::new();
    for f in frames {
        let g = grey(f);
        let n = g.len() as f64;
        let m = g.iter().map(|&p| p as f64 / 255.0).sum::<f64>() / n;
        let v = g.iter().map(|&p| (p as f64 / 255.0 - m).powi(2)).sum::<f64>() / n;
        let mut h = [0f64; 16];
        g.iter().for_each(|&p| h[p as usize / 16] += 1.0);
        let ent = -h.iter().filter(|&&c| c > 0.0).map(|c| (c / n) * (c / n).log2()).sum::<f64>();
        means.push(m);
        stds.push(v.sqrt());
        ents.push(ent);
        let r = resize_bilinear(&f.data, f.w, f.h, 64, 64);
        small.push(grey(&Rgb { w: 64, h: 64, data: r }));
    }
    let motion: Vec<f64> = small
        .windows(2)
        .map(|w| w[0].iter().zip(&w[1]).map(|(a, b)| (*a as f64 - *b as f64).abs() / 255.0).sum::<f64>() / 4096.0)
        .collect();
    let (mm, ms) = mean_std(&means);
    let (sm, ss) = mean_std(&stds);
    let (em, es) = mean_std(&ents);
    let mmean = if motion.is_empty() { 0.0 } else { motion.iter().sum::<f64>() / motion.len() as f64 };
    let mmax = motion.iter().copied().fold(0.0, f64::max);
    [mm, ms, sm, ss, em, es, mmean, mmax].iter().map(|&x| x as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gif(frames: &[[u8; 3]]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = image::codecs::gif::GifEncoder::new(&mut out);
            for c in frames {
                let buf = image::RgbaImage::from_fn(16, 16, |x, _| {
                    if x < 8 { image::Rgba([c[0], c[1], c[2], 255]) } else { image::Rgba([0, 0, 0, 255]) }
                });
                enc.encode_frame(image::Frame::new(buf)).unwrap();
            }
        }
        out
    }

    #[test]
    fn animated_gif_frames_and_motion() {
        let bytes = gif(&[[255, 255, 255], [0, 0, 0], [255, 255, 255]]);
        let f = frames(&bytes, Path::new("x.gif")).unwrap();
        assert_eq!(f.len(), 3);
        let s = stats(&f);
        assert_eq!(s.len(), STATS_DIM);
        assert!(s[6] > 0.3, "alternating frames move: {}", s[6]);
        let still = stats(&frames(&gif(&[[9, 9, 9], [9, 9, 9]]), Path::new("y.gif")).unwrap());
        assert_eq!(still[6], 0.0);
    }

    #[test]
    fn unknown_container_without_ffmpeg_names_the_file() {
        let e = frames(b"\0\0\0\x18ftypmp42 not really", Path::new("/tmp/sample.mp4"));
        if let Err(msg) = e {
            assert!(msg.contains("sample.mp4"), "{msg}");
        }
    }
}
