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

use crate::image::{Rgb, grey, guard, resize_bilinear};

pub const MAX_FRAMES: usize = 8;
pub const STATS_DIM: usize = 8;

/// The frames of an animation, `open` called twice: once to count them, once to keep the
/// sampled ones. Holding every decoded frame would let a small file (a long GIF of large,
/// uniform frames compresses a thousandfold) exhaust memory; this holds `MAX_FRAMES`.
fn from_frames<'a>(open: impl Fn() -> Result<image::Frames<'a>, String>) -> Result<Vec<Rgb>, String> {
    let mut n = 0usize;
    for f in open()? {
        f.map_err(|e| format!("video frames: {e}"))?;
        n += 1;
    }
    let picks = picks(n);
    let mut out = Vec::with_capacity(picks.len());
    for (i, f) in open()?.enumerate() {
        if picks.contains(&i) {
            let f = f.map_err(|e| format!("video frames: {e}"))?;
            let b = image::DynamicImage::ImageRgba8(f.into_buffer()).to_rgb8();
            out.push(Rgb { w: b.width() as usize, h: b.height() as usize, data: b.into_raw() });
        }
    }
    Ok(out)
}

/// Which of `n` frames are kept: all up to `MAX_FRAMES`, else `MAX_FRAMES` evenly spaced
/// from the first to the last.
fn picks(n: usize) -> Vec<usize> {
    if n <= MAX_FRAMES {
        return (0..n).collect();
    }
    (0..MAX_FRAMES).map(|i| i * (n - 1) / (MAX_FRAMES - 1)).collect()
}

fn sample(frames: Vec<Rgb>) -> Vec<Rgb> {
    let picks = picks(frames.len());
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
        Ok(ImageFormat::Gif) => from_frames(|| {
            let mut d = image::codecs::gif::GifDecoder::new(Cursor::new(bytes)).map_err(|e| format!("gif: {e}"))?;
            guard(&mut d)?;
            Ok(d.into_frames())
        })?,
        Ok(ImageFormat::WebP) => from_frames(|| {
            let mut d = image::codecs::webp::WebPDecoder::new(Cursor::new(bytes)).map_err(|e| format!("webp: {e}"))?;
            guard(&mut d)?;
            Ok(d.into_frames())
        })?,
        Ok(ImageFormat::Png) => {
            let mut d = image::codecs::png::PngDecoder::new(Cursor::new(bytes)).map_err(|e| format!("png: {e}"))?;
            guard(&mut d)?;
            if d.is_apng().map_err(|e| format!("png: {e}"))? {
                from_frames(|| {
                    let mut d =
                        image::codecs::png::PngDecoder::new(Cursor::new(bytes)).map_err(|e| format!("png: {e}"))?;
                    guard(&mut d)?;
                    Ok(d.apng().map_err(|e| format!("apng: {e}"))?.into_frames())
                })?
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

    /// A GIF whose header declares a 35 145 x 35 085 canvas around one 1 x 1 frame (the
    /// fuzzer's find: the frame iterator allocated the canvas, 4.9 GB).
    fn gif_with_huge_canvas() -> Vec<u8> {
        let mut b = b"GIF89a".to_vec();
        b.extend_from_slice(&[0x49, 0x89, 0x0d, 0x89, 0x00, 0x00, 0x00]);
        b.extend_from_slice(&[0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0x80, 0, 0, 0, 255, 255, 255]);
        b.extend_from_slice(&[0x02, 0x02, 0x44, 0x01, 0x00, 0x3b]);
        b
    }

    #[test]
    fn a_canvas_over_the_limit_is_an_error_not_an_allocation() {
        let err = frames(&gif_with_huge_canvas(), Path::new("big.gif")).err().unwrap();
        assert!(err.contains("35145 x 35085") && err.contains("over the limit"), "{err}");
        assert!(crate::image::decode(&gif_with_huge_canvas()).is_err());
    }

    #[test]
    fn a_long_animation_keeps_eight_frames_from_first_to_last() {
        assert_eq!(picks(20), [0, 2, 5, 8, 10, 13, 16, 19]);
        assert_eq!(picks(3), [0, 1, 2]);
        let colours: Vec<[u8; 3]> = (0..20u8).map(|i| [i * 12, i * 12, i * 12]).collect();
        let f = frames(&gif(&colours), Path::new("long.gif")).unwrap();
        assert_eq!(f.len(), MAX_FRAMES);
        // GIF palettes may round a grey by a step; the kept frames are the evenly spaced ones.
        for (frame, want) in f.iter().zip(picks(20)) {
            let got = frame.data[0] as i32;
            assert!((got - want as i32 * 12).abs() <= 2, "frame {want}: grey {got}");
        }
    }

    #[test]
    fn unknown_container_without_ffmpeg_names_the_file() {
        let e = frames(b"\0\0\0\x18ftypmp42 not really", Path::new("/tmp/sample.mp4"));
        if let Err(msg) = e {
            assert!(msg.contains("sample.mp4"), "{msg}");
        }
    }
}
