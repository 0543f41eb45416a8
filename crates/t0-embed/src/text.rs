//! Sentence embeddings from a BERT-family model directory (config.json, tokenizer.json,
//! model.safetensors), as sentence-transformers computes them: mean pooling of the last hidden
//! state under the attention mask, then L2 normalisation.
//!
//! Texts are never padded: only texts of the same token length share a forward pass. A vector
//! is then a function of its text and the model only, whatever else shared its batch, so
//! cached and fresh vectors are bit-identical.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, HiddenAct};
use tokenizers::Tokenizer;

use crate::ModelError;

/// Default sequence length when the directory has no `sentence_bert_config.json`; the
/// tokenizer.json of all-MiniLM-L6-v2 is preset to 128, sentence-transformers uses 256.
pub const DEFAULT_MAX_SEQ: usize = 256;

pub struct TextModel {
    model: BertModel,
    tokenizer: Tokenizer,
    pub dir: PathBuf,
    pub max_seq: usize,
    pub dim: usize,
    /// blake3 over config, tokenizer, pooling settings and weights: part of every cache key.
    pub version: String,
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, ModelError> {
    let p = dir.join(name);
    std::fs::read(&p).map_err(|e| ModelError::new(&p, format!("cannot be read: {e}")))
}

impl TextModel {
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        if !dir.is_dir() {
            return Err(ModelError::new(dir, "text model directory not found (scripts/fetch-models.sh fetches it)"));
        }
        let config_bytes = read(dir, "config.json")?;
        let mut config: Config = serde_json::from_slice(&config_bytes)
            .map_err(|e| ModelError::new(dir.join("config.json"), format!("not a BERT config: {e}")))?;
        // sentence-transformers uses the exact erf GELU whatever the config spells.
        if matches!(config.hidden_act, HiddenAct::GeluApproximate) {
            config.hidden_act = HiddenAct::Gelu;
        }
        let max_seq = match std::fs::read(dir.join("sentence_bert_config.json")) {
            Ok(b) => serde_json::from_slice::<serde_json::Value>(&b)
                .ok()
                .and_then(|v| v.get("max_seq_length").and_then(|m| m.as_u64()))
                .map(|m| m as usize)
                .unwrap_or(DEFAULT_MAX_SEQ),
            Err(_) => DEFAULT_MAX_SEQ,
        }
        .min(config.max_position_embeddings);
        if let Ok(b) = std::fs::read(dir.join("1_Pooling/config.json")) {
            let v: serde_json::Value = serde_json::from_slice(&b)
                .map_err(|e| ModelError::new(dir.join("1_Pooling/config.json"), e.to_string()))?;
            if v.get("pooling_mode_mean_tokens").and_then(|m| m.as_bool()) == Some(false) {
                return Err(ModelError::new(
                    dir.join("1_Pooling/config.json"),
                    "only mean pooling is implemented (pooling_mode_mean_tokens is false)",
                ));
            }
        }
        let tok_bytes = read(dir, "tokenizer.json")?;
        let mut tokenizer = Tokenizer::from_bytes(&tok_bytes)
            .map_err(|e| ModelError::new(dir.join("tokenizer.json"), format!("not a tokenizer: {e}")))?;
        // One text at a time: no padding; truncate at the model's sequence length.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams { max_length: max_seq, ..Default::default() }))
            .map_err(|e| ModelError::new(dir.join("tokenizer.json"), e.to_string()))?;
        let weights = dir.join("model.safetensors");
        let mut h = blake3::Hasher::new();
        h.update(b"t0-embed text v1\0");
        h.update(&config_bytes);
        h.update(&tok_bytes);
        h.update(&(max_seq as u64).to_le_bytes());
        let f = std::fs::File::open(&weights).map_err(|e| ModelError::new(&weights, format!("cannot be read: {e}")))?;
        h.update_reader(f).map_err(|e| ModelError::new(&weights, e.to_string()))?;
        // SAFETY: the weights file is opened read-only and not modified while mapped.
        #[expect(unsafe_code, reason = "memory-mapped weights: candle's loader is unsafe by signature")]
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu) }
            .map_err(|e| ModelError::new(&weights, e.to_string()))?;
        let model = BertModel::load(vb, &config).map_err(|e| ModelError::new(&weights, e.to_string()))?;
        Ok(TextModel {
            model,
            tokenizer,
            dir: dir.to_path_buf(),
            max_seq,
            dim: config.hidden_size,
            version: h.finalize().to_hex().to_string(),
        })
    }

    /// Token count of `text` after truncation (texts of equal count batch without padding).
    pub fn token_len(&self, text: &str) -> Result<usize, String> {
        Ok(self.tokenizer.encode(text, true).map_err(|e| format!("tokenizer: {e}"))?.get_ids().len())
    }

    /// Vectors of texts that all tokenize to the same length, in one forward pass. Without
    /// padding each row sees exactly what it would alone, so the vectors are bit-identical to
    /// [`TextModel::embed`]'s (tested in `tests/models.rs`).
    pub fn embed_same_length(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let encs = texts
            .iter()
            .map(|t| self.tokenizer.encode(*t, true).map_err(|e| format!("tokenizer: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let n = encs.first().map(|e| e.get_ids().len()).unwrap_or(0);
        if n == 0 || encs.iter().any(|e| e.get_ids().len() != n) {
            return Err("embed_same_length: texts of different (or zero) token length".into());
        }
        let b = encs.len();
        let dev = Device::Cpu;
        let flat = |f: fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encs.iter().flat_map(|e| f(e).iter().copied()).collect()
        };
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let input = Tensor::from_vec(flat(|e| e.get_ids()), (b, n), &dev)?;
            let types = Tensor::from_vec(flat(|e| e.get_type_ids()), (b, n), &dev)?;
            let mask = Tensor::from_vec(flat(|e| e.get_attention_mask()), (b, n), &dev)?;
            let hidden = self.model.forward(&input, &types, Some(&mask))?; // (b, n, dim)
            pool(&hidden, &mask)?.to_vec2::<f32>()
        };
        run().map_err(|e| format!("model: {e}"))
    }

    /// The L2-normalised sentence vector of `text`.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| format!("tokenizer: {e}"))?;
        let ids = enc.get_ids();
        let n = ids.len();
        let dev = Device::Cpu;
        let run = || -> candle_core::Result<Vec<f32>> {
            let input = Tensor::new(ids, &dev)?.unsqueeze(0)?;
            let types = Tensor::new(enc.get_type_ids(), &dev)?.unsqueeze(0)?;
            let mask = Tensor::new(enc.get_attention_mask(), &dev)?.unsqueeze(0)?;
            let hidden = self.model.forward(&input, &types, Some(&mask))?; // (1, n, dim)
            pool(&hidden, &mask)?.squeeze(0)?.to_vec1::<f32>()
        };
        if n == 0 {
            return Err("the tokenizer produced no tokens".into());
        }
        run().map_err(|e| format!("model: {e}"))
    }
}

/// Mean of `hidden` (b, n, dim) under `mask` (b, n), L2-normalised: (b, dim).
fn pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (b, n, 1)
    let summed = hidden.broadcast_mul(&maskf)?.sum(1)?; // (b, dim)
    let count = maskf.sum(1)?.clamp(1e-9f32, f32::MAX)?;
    let mean = summed.broadcast_div(&count)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
    mean.broadcast_div(&norm)
}
