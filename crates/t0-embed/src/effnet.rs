//! EfficientNet-Lite0 (Tan & Le; the TF-Lite variant: no squeeze-excitation, ReLU6, stem and
//! head not scaled) in candle, laid out as the `efficientnet-lite-pytorch` package names its
//! weights, with TensorFlow "SAME" padding as that package's static-padding convolutions use.
//!
//! The image embedding is the pooled penultimate activation (1280 values, after the head
//! convolution, BatchNorm and ReLU6, averaged over the spatial grid); the ImageNet logits come
//! with it for the top-5 check. BatchNorm is folded into the preceding convolution at load.
//! An image is computed alone (batch of one), so a vector never depends on its batch.

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::ModelError;

pub const INPUT: usize = 224;
pub const FEATURES: usize = 1280;
const BN_EPS: f64 = 1e-3;
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// (repeats, kernel, stride, expand ratio, input channels, output channels) per stage.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// A 1x1 (or im2col'd) convolution with BatchNorm folded in: y = W x + b, W (out, in).
struct Dense {
    w: Tensor,
    b: Tensor,
}

/// A depthwise k x k convolution with BatchNorm folded in: per-tap weights (k*k of (C, 1, 1)).
struct Depthwise {
    taps: Vec<Tensor>,
    b: Tensor,
    k: usize,
    stride: usize,
}

struct Block {
    expand: Option<Dense>,
    dw: Depthwise,
    project: Dense,
    skip: bool,
}

pub struct EfficientNetLite0 {
    stem: Dense,
    blocks: Vec<Block>,
    head: Dense,
    fc_w: Tensor,
    fc_b: Tensor,
    /// blake3 of the weights file: part of every cache key.
    pub version: String,
}

pub struct ImageOutput {
    pub features: Vec<f32>,
    pub logits: Vec<f32>,
}

/// BatchNorm `prefix` as (scale, shift) so that bn(x) = scale * x + shift, computed in f64.
fn bn(vb: &VarBuilder, prefix: &str, c: usize) -> candle_core::Result<(Vec<f64>, Vec<f64>)> {
    let g = vb.get(c, &format!("{prefix}.weight"))?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let beta = vb.get(c, &format!("{prefix}.bias"))?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let mean = vb.get(c, &format!("{prefix}.running_mean"))?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let var = vb.get(c, &format!("{prefix}.running_var"))?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let scale: Vec<f64> = g.iter().zip(&var).map(|(g, v)| g / (v + BN_EPS).sqrt()).collect();
    let shift = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    Ok((scale, shift))
}

/// Conv weight (out, in, kh, kw) with BN folded, flattened to (out, in*kh*kw).
fn dense(
    vb: &VarBuilder,
    conv: &str,
    bn_name: &str,
    shape: (usize, usize, usize, usize),
) -> candle_core::Result<Dense> {
    let (o, i, kh, kw) = shape;
    let w = vb.get(shape, &format!("{conv}.weight"))?.to_dtype(DType::F64)?.reshape((o, i * kh * kw))?;
    let (scale, shift) = bn(vb, bn_name, o)?;
    let s = Tensor::from_vec(scale, (o, 1), &Device::Cpu)?;
    let w = w.broadcast_mul(&s)?.to_dtype(DType::F32)?;
    let b = Tensor::from_vec(shift, (o, 1), &Device::Cpu)?.to_dtype(DType::F32)?;
    Ok(Dense { w, b })
}

fn depthwise(
    vb: &VarBuilder,
    conv: &str,
    bn_name: &str,
    c: usize,
    k: usize,
    stride: usize,
) -> candle_core::Result<Depthwise> {
    let w = vb.get((c, 1, k, k), &format!("{conv}.weight"))?.to_dtype(DType::F64)?.reshape((c, k * k))?;
    let (scale, shift) = bn(vb, bn_name, c)?;
    let s = Tensor::from_vec(scale, (c, 1), &Device::Cpu)?;
    let w = w.broadcast_mul(&s)?.to_dtype(DType::F32)?;
    let taps = (0..k * k).map(|t| w.narrow(1, t, 1)?.reshape((c, 1, 1))).collect::<candle_core::Result<Vec<_>>>()?;
    let b = Tensor::from_vec(shift, (c, 1, 1), &Device::Cpu)?.to_dtype(DType::F32)?;
    Ok(Depthwise { taps, b, k, stride })
}

/// TensorFlow SAME padding: (before, after) for input `i`, kernel `k`, stride `s`.
fn same_pad(i: usize, k: usize, s: usize) -> (usize, usize) {
    let o = i.div_ceil(s);
    let total = ((o - 1) * s + k).saturating_sub(i);
    (total / 2, total - total / 2)
}

/// Zero-pad (C, H, W) for a k x k window of stride s, then return the (C, Ho, Wo) slice seen
/// by tap (dy, dx) of every output position.
fn padded(x: &Tensor, k: usize, s: usize) -> candle_core::Result<(Tensor, usize, usize)> {
    let (_, h, w) = x.dims3()?;
    let (ph0, ph1) = same_pad(h, k, s);
    let (pw0, pw1) = same_pad(w, k, s);
    let (ho, wo) = (h.div_ceil(s), w.div_ceil(s));
    // One extra zero row/column for strided taps, so the reshape trick below always fits.
    let extra = s - 1;
    let x = x.pad_with_zeros(1, ph0, ph1 + extra)?.pad_with_zeros(2, pw0, pw1 + extra)?;
    Ok((x, ho, wo))
}

fn tap(xp: &Tensor, dy: usize, dx: usize, ho: usize, wo: usize, s: usize) -> candle_core::Result<Tensor> {
    let c = xp.dim(0)?;
    let t = xp.narrow(1, dy, ho * s)?.narrow(2, dx, wo * s)?;
    if s == 1 {
        return Ok(t);
    }
    t.reshape((c, ho, s, wo, s))?.narrow(2, 0, 1)?.narrow(4, 0, 1)?.reshape((c, ho, wo))
}

fn relu6(x: &Tensor) -> candle_core::Result<Tensor> {
    x.clamp(0f32, 6f32)
}

impl Dense {
    /// (C, H, W) -> (O, H, W) for a 1x1 convolution.
    fn pointwise(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (c, h, w) = x.dims3()?;
        let y = self.w.matmul(&x.reshape((c, h * w))?)?.broadcast_add(&self.b)?;
        y.reshape((self.w.dim(0)?, h, w))
    }
}

impl Depthwise {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (xp, ho, wo) = padded(x, self.k, self.stride)?;
        let mut acc: Option<Tensor> = None;
        for dy in 0..self.k {
            for dx in 0..self.k {
                let t = tap(&xp, dy, dx, ho, wo, self.stride)?.broadcast_mul(&self.taps[dy * self.k + dx])?;
                acc = Some(match acc {
                    None => t,
                    Some(a) => (a + t)?,
                });
            }
        }
        acc.expect("k >= 1").broadcast_add(&self.b)
    }
}

impl EfficientNetLite0 {
    pub fn load(weights: &Path) -> Result<Self, ModelError> {
        let err = |e: candle_core::Error| ModelError::new(weights, e.to_string());
        let mut h = blake3::Hasher::new();
        h.update(b"t0-embed efficientnet-lite0 v1\0");
        let f = std::fs::File::open(weights).map_err(|e| {
            ModelError::new(weights, format!("image model not found ({e}); scripts/fetch-models.sh fetches it"))
        })?;
        h.update_reader(f).map_err(|e| ModelError::new(weights, e.to_string()))?;
        // SAFETY: the weights file is opened read-only and not modified while mapped.
        #[expect(unsafe_code, reason = "memory-mapped weights: candle's loader is unsafe by signature")]
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }.map_err(err)?;
        let stem = dense(&vb, "_conv_stem", "_bn0", (32, 3, 3, 3)).map_err(err)?;
        let mut blocks = Vec::new();
        for (repeats, k, stride, e, cin, cout) in STAGES {
            for r in 0..repeats {
                let i = blocks.len();
                let (cin, stride) = if r == 0 { (cin, stride) } else { (cout, 1) };
                let mid = cin * e;
                let p = format!("_blocks.{i}");
                let expand = if e != 1 {
                    Some(
                        dense(&vb, &format!("{p}._expand_conv"), &format!("{p}._bn0"), (mid, cin, 1, 1))
                            .map_err(err)?,
                    )
                } else {
                    None
                };
                let dw = depthwise(&vb, &format!("{p}._depthwise_conv"), &format!("{p}._bn1"), mid, k, stride)
                    .map_err(err)?;
                let project =
                    dense(&vb, &format!("{p}._project_conv"), &format!("{p}._bn2"), (cout, mid, 1, 1)).map_err(err)?;
                blocks.push(Block { expand, dw, project, skip: stride == 1 && cin == cout });
            }
        }
        let head = dense(&vb, "_conv_head", "_bn1", (FEATURES, 320, 1, 1)).map_err(err)?;
        let fc_w = vb.get((1000, FEATURES), "_fc.weight").map_err(err)?;
        let fc_b = vb.get(1000, "_fc.bias").map_err(err)?;
        Ok(EfficientNetLite0 { stem, blocks, head, fc_w, fc_b, version: h.finalize().to_hex().to_string() })
    }

    /// `input`: normalised (3, 224, 224) float32 in CHW order.
    pub fn forward(&self, input: Vec<f32>) -> candle_core::Result<ImageOutput> {
        let x = Tensor::from_vec(input, (3, INPUT, INPUT), &Device::Cpu)?;
        // Stem: 3x3 stride 2 as im2col (27 rows) and one matmul.
        let (xp, ho, wo) = padded(&x, 3, 2)?;
        let mut cols = Vec::with_capacity(27);
        for c in 0..3 {
            let xc = xp.narrow(0, c, 1)?;
            for dy in 0..3 {
                for dx in 0..3 {
                    cols.push(tap(&xc, dy, dx, ho, wo, 2)?.reshape((1, ho * wo))?);
                }
            }
        }
        let cols = Tensor::cat(&cols, 0)?;
        let mut x = relu6(&self.stem.w.matmul(&cols)?.broadcast_add(&self.stem.b)?.reshape((32, ho, wo))?)?;
        for b in &self.blocks {
            let input = x.clone();
            let mut y = match &b.expand {
                Some(e) => relu6(&e.pointwise(&x)?)?,
                None => x,
            };
            y = relu6(&b.dw.forward(&y)?)?;
            y = b.project.pointwise(&y)?;
            x = if b.skip { (y + input)? } else { y };
        }
        let x = relu6(&self.head.pointwise(&x)?)?;
        let pooled = x.flatten_from(1)?.mean(D::Minus1)?; // (1280)
        let logits = self.fc_w.matmul(&pooled.unsqueeze(1)?)?.squeeze(1)?.broadcast_add(&self.fc_b)?;
        Ok(ImageOutput { features: pooled.to_vec1()?, logits: logits.to_vec1()? })
    }
}

/// The reference preprocessing: resize to 224 x 224 (Pillow's bilinear filter, aspect not
/// kept), scale to [0, 1], normalise with the ImageNet mean and std; CHW float32.
pub fn preprocess(rgb: &[u8], w: usize, h: usize) -> Vec<f32> {
    let resized = crate::image::resize_bilinear(rgb, w, h, INPUT, INPUT);
    let mut out = vec![0f32; 3 * INPUT * INPUT];
    for (p, px) in resized.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * INPUT * INPUT + p] = (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    out
}
