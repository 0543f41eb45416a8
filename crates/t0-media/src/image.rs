//! Image decoding, Pillow-exact bilinear resizing, and the handcrafted image vector.
//!
//! Handcrafted vector (`HANDCRAFTED_DIM` = 372 values, every one in a fixed position):
//! - `0..16`    grey-level histogram, 16 bins, as fractions of the pixels
//! - `16..40`   R, G, B histograms, 8 bins each, as fractions
//! - `40..46`   mean and standard deviation of R, G, B in [0, 1]
//! - `46..48`   edge density (share of pixels whose Sobel magnitude exceeds 0.25) and the
//!   mean Sobel magnitude, on the grey image in [0, 1]
//! - `48..372`  HOG of the grey image resized to 64 x 64: 16 x 16-pixel cells, 9 unsigned
//!   orientation bins, 2 x 2-cell blocks normalised with L2-Hys (clip 0.2), as scikit-image
//!   does; 3 x 3 blocks x 36.

pub const HANDCRAFTED_DIM: usize = 372;

/// A decoded image as 8-bit RGB.
pub struct Rgb {
    pub w: usize,
    pub h: usize,
    pub data: Vec<u8>,
}

/// The widest or tallest image a decoder accepts.
pub const MAX_SIDE: u32 = 16_384;
/// The most pixels an image or animation canvas may have (8K UHD fits).
pub const MAX_PIXELS: u64 = 1 << 25;

/// The decoders' limits. A file's header declares its size before any pixel, and decoders
/// allocate from it: a 30-byte GIF can declare a 35 145 x 35 085 canvas (4.9 GB). Past these
/// limits the file is an error naming the size, not an allocation.
pub fn limits() -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(MAX_SIDE);
    l.max_image_height = Some(MAX_SIDE);
    l.max_alloc = Some(MAX_PIXELS * 8);
    l
}

/// Apply `limits` to a decoder and check its canvas against `MAX_PIXELS` (not every decoder
/// honours `max_alloc`, so the pixel count is checked here too).
pub fn guard(d: &mut impl image::ImageDecoder) -> Result<(), String> {
    let (w, h) = d.dimensions();
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(format!("image: {w} x {h} pixels is over the limit of {MAX_PIXELS}"));
    }
    d.set_limits(limits()).map_err(|e| format!("image: {e}"))
}

/// Decode PNG, JPEG, GIF (first frame) or WebP bytes; the format comes from the bytes. An
/// image over `limits` is an error.
pub fn decode(bytes: &[u8]) -> Result<Rgb, String> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("image: {e}"))?;
    reader.limits(limits());
    let img = reader.decode().map_err(|e| format!("image: {e}"))?;
    let rgb = img.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    if w == 0 || h == 0 {
        return Err("image: empty".into());
    }
    Ok(Rgb { w, h, data: rgb.into_raw() })
}

/// Pillow's fixed-point bits for 8-bit resampling (32 - 8 - 2).
const PRECISION_BITS: u32 = 22;

/// Pillow's coefficient tables for one axis: (first input index, count) and the fixed-point
/// weights, `ksize` per output position.
fn coeffs(in_size: usize, out_size: usize) -> (Vec<(usize, usize)>, Vec<i32>, usize) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the bilinear (triangle) filter has support 1
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let t = ((x + xmin) as f64 - center + 0.5) * ss;
            let w = if t.abs() < 1.0 { 1.0 - t.abs() } else { 0.0 };
            *kx = w;
            ww += w;
        }
        for x in 0..ksize {
            let v = if x < xmax && ww != 0.0 { k[x] / ww } else { 0.0 };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            kk[xx * ksize + x] = if v < 0.0 { (-0.5 + f) as i32 } else { (0.5 + f) as i32 };
        }
        bounds.push((xmin, xmax));
    }
    (bounds, kk, ksize)
}

fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS) << 8 {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resize interleaved 8-bit RGB exactly as Pillow's `Image.resize(size, BILINEAR)`: a
/// horizontal pass then a vertical pass, each in fixed point with rounding to 8 bits.
pub fn resize_bilinear(src: &[u8], w: usize, h: usize, ow: usize, oh: usize) -> Vec<u8> {
    let (hb, hk, hks) = coeffs(w, ow);
    let (vb, vk, vks) = coeffs(h, oh);
    let y_first = vb[0].0;
    let y_last = vb[oh - 1].0 + vb[oh - 1].1;
    // Horizontal pass over the rows the vertical pass needs.
    let rows = if ow != w { y_last - y_first } else { h };
    let row0 = if ow != w { y_first } else { 0 };
    let tmp: Vec<u8> = if ow != w {
        let mut t = vec![0u8; rows * ow * 3];
        for y in 0..rows {
            let line = &src[(y + row0) * w * 3..(y + row0 + 1) * w * 3];
            for xx in 0..ow {
                let (xmin, n) = hb[xx];
                let k = &hk[xx * hks..xx * hks + n];
                for c in 0..3 {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (x, kx) in k.iter().enumerate() {
                        ss += line[(x + xmin) * 3 + c] as i64 * *kx as i64;
                    }
                    t[(y * ow + xx) * 3 + c] = clip8(ss);
                }
            }
        }
        t
    } else {
        src.to_vec()
    };
    if oh == h {
        return tmp;
    }
    let mut out = vec![0u8; oh * ow * 3];
    for yy in 0..oh {
        let (ymin, n) = vb[yy];
        let ymin = ymin - row0;
        let k = &vk[yy * vks..yy * vks + n];
        for xx in 0..ow {
            for c in 0..3 {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for (y, ky) in k.iter().enumerate() {
                    ss += tmp[((y + ymin) * ow + xx) * 3 + c] as i64 * *ky as i64;
                }
                out[(yy * ow + xx) * 3 + c] = clip8(ss);
            }
        }
    }
    out
}

/// ITU-R 601 luma, as Pillow's `convert("L")` rounds it.
pub fn grey(img: &Rgb) -> Vec<u8> {
    img.data
        .chunks_exact(3)
        .map(|p| ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8)
        .collect()
}

/// Sobel magnitude of a grey image in [0, 1] (edges replicated).
fn sobel(g: &[f32], w: usize, h: usize) -> Vec<f32> {
    let at = |x: isize, y: isize| g[(y.clamp(0, h as isize - 1) as usize) * w + x.clamp(0, w as isize - 1) as usize];
    let mut out = vec![0f32; w * h];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let gx = at(x + 1, y - 1) + 2.0 * at(x + 1, y) + at(x + 1, y + 1)
                - at(x - 1, y - 1)
                - 2.0 * at(x - 1, y)
                - at(x - 1, y + 1);
            let gy = at(x - 1, y + 1) + 2.0 * at(x, y + 1) + at(x + 1, y + 1)
                - at(x - 1, y - 1)
                - 2.0 * at(x, y - 1)
                - at(x + 1, y - 1);
            out[y as usize * w + x as usize] = (gx * gx + gy * gy).sqrt() / 4.0;
        }
    }
    out
}

const HOG_SIZE: usize = 64;
const HOG_CELL: usize = 16;
const HOG_BINS: usize = 9;

/// HOG with scikit-image's conventions (central differences, unsigned orientations, L2-Hys).
fn hog(g: &[f32]) -> Vec<f32> {
    let n = HOG_SIZE;
    let cells = n / HOG_CELL;
    let mut hist = vec![0f32; cells * cells * HOG_BINS];
    for y in 0..n {
        for x in 0..n {
            let gx = if x == 0 || x == n - 1 { 0.0 } else { g[y * n + x + 1] - g[y * n + x - 1] };
            let gy = if y == 0 || y == n - 1 { 0.0 } else { g[(y + 1) * n + x] - g[(y - 1) * n + x] };
            let mag = (gx * gx + gy * gy).sqrt();
            let mut ang = gy.atan2(gx).to_degrees();
            if ang < 0.0 {
                ang += 180.0;
            }
            let bin = ((ang / (180.0 / HOG_BINS as f32)) as usize).min(HOG_BINS - 1);
            let cell = (y / HOG_CELL) * cells + x / HOG_CELL;
            hist[cell * HOG_BINS + bin] += mag / (HOG_CELL * HOG_CELL) as f32;
        }
    }
    let mut out = Vec::with_capacity((cells - 1) * (cells - 1) * 4 * HOG_BINS);
    for by in 0..cells - 1 {
        for bx in 0..cells - 1 {
            let mut block = Vec::with_capacity(4 * HOG_BINS);
            for (cy, cx) in [(by, bx), (by, bx + 1), (by + 1, bx), (by + 1, bx + 1)] {
                block.extend_from_slice(&hist[(cy * cells + cx) * HOG_BINS..(cy * cells + cx + 1) * HOG_BINS]);
            }
            let l2 = |b: &[f32]| (b.iter().map(|v| v * v).sum::<f32>() + 1e-10).sqrt();
            let nrm = l2(&block);
            block.iter_mut().for_each(|v| *v = (*v / nrm).min(0.2));
            let nrm = l2(&block);
            block.iter_mut().for_each(|v| *v /= nrm);
            out.extend(block);
        }
    }
    out
}

/// The handcrafted vector of an image (layout in the module docs).
pub fn handcrafted(img: &Rgb) -> Vec<f32> {
    let n = (img.w * img.h) as f32;
    let mut v = Vec::with_capacity(HANDCRAFTED_DIM);
    let g = grey(img);
    let mut gh = [0f32; 16];
    g.iter().for_each(|&p| gh[p as usize / 16] += 1.0);
    v.extend(gh.iter().map(|c| c / n));
    for c in 0..3 {
        let mut hh = [0f32; 8];
        img.data.chunks_exact(3).for_each(|p| hh[p[c] as usize / 32] += 1.0);
        v.extend(hh.iter().map(|x| x / n));
    }
    for c in 0..3 {
        let (mut s, mut s2) = (0f64, 0f64);
        img.data.chunks_exact(3).for_each(|p| {
            let x = p[c] as f64 / 255.0;
            s += x;
            s2 += x * x;
        });
        let mean = s / n as f64;
        v.push(mean as f32);
        v.push((s2 / n as f64 - mean * mean).max(0.0).sqrt() as f32);
    }
    let gf: Vec<f32> = g.iter().map(|&p| p as f32 / 255.0).collect();
    let mag = sobel(&gf, img.w, img.h);
    v.push(mag.iter().filter(|&&m| m > 0.25).count() as f32 / n);
    v.push((mag.iter().map(|&m| m as f64).sum::<f64>() / n as f64) as f32);
    let small = resize_bilinear(&img.data, img.w, img.h, HOG_SIZE, HOG_SIZE);
    let sg = grey(&Rgb { w: HOG_SIZE, h: HOG_SIZE, data: small });
    v.extend(hog(&sg.iter().map(|&p| p as f32 / 255.0).collect::<Vec<_>>()));
    debug_assert_eq!(v.len(), HANDCRAFTED_DIM);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_identity_and_constant() {
        let src: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(resize_bilinear(&src, 4, 3, 4, 3), src);
        let flat = vec![200u8; 50 * 40 * 3];
        assert!(resize_bilinear(&flat, 50, 40, 7, 9).iter().all(|&p| p == 200));
    }

    #[test]
    fn handcrafted_has_its_documented_size() {
        let img = Rgb { w: 20, h: 10, data: (0..600).map(|i| (i % 251) as u8).collect() };
        let v = handcrafted(&img);
        assert_eq!(v.len(), HANDCRAFTED_DIM);
        assert!((v[..16].iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(v.iter().all(|x| x.is_finite()));
    }
}
