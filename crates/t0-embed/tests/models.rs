//! Equality of the Rust extractors with their Python peers, on real weights and real media
//! fetched by scripts/fetch-models.sh (the test command runs it first). The references were
//! computed once in Python (scripts/reference/) and are committed under tests/fixtures.
#![expect(clippy::print_stderr, reason = "the equality tests report their worst differences")]

use std::path::PathBuf;

use t0_embed::{audio, effnet, image, text};

fn models() -> PathBuf {
    let dir = std::env::var_os("T0CLIP_MODELS").map(PathBuf::from).unwrap_or_else(t0_embed::default_models_dir);
    assert!(
        dir.join("all-minilm-l6-v2/model.safetensors").is_file(),
        "models missing in {}: run scripts/fetch-models.sh",
        dir.display()
    );
    dir
}

fn fixture(name: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn minilm_matches_sentence_transformers_within_1e5() {
    let m = text::TextModel::load(&models().join("all-minilm-l6-v2")).unwrap();
    assert_eq!(m.max_seq, 256, "sentence_bert_config.json sets 256 over tokenizer.json's 128");
    let r = fixture("minilm_reference.json");
    let sentences = r["sentences"].as_array().unwrap();
    let mut worst = 0f64;
    for (s, want) in sentences.iter().zip(r["vectors"].as_array().unwrap()) {
        let got = m.embed(s.as_str().unwrap()).unwrap();
        let want = floats(want);
        assert_eq!(got.len(), 384);
        let d = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        worst = worst.max(d);
        assert!(d <= 1e-5, "{:?}: max abs difference {d:e}", s.as_str().unwrap());
    }
    eprintln!("minilm: {} sentences, worst max-abs difference {worst:e}", sentences.len());
    // The same text twice gives the same bits.
    assert_eq!(m.embed("repeat me").unwrap(), m.embed("repeat me").unwrap());
}

#[test]
fn efficientnet_lite0_matches_pytorch_top5_and_features() {
    let dir = models();
    let m = effnet::EfficientNetLite0::load(&dir.join("efficientnet-lite0/model.safetensors")).unwrap();
    let r = fixture("efficientnet_lite0_reference.json");
    let results = r["efficientnet_lite0"]["results"].as_object().unwrap();
    for (name, want) in results {
        let file = dir.join("images").join(name.trim_start_matches("images/"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let img = image::decode(&bytes).unwrap();
        let out = m.forward(effnet::preprocess(&img.data, img.w, img.h)).unwrap();
        // Top-5 classes in order.
        let mut idx: Vec<usize> = (0..out.logits.len()).collect();
        idx.sort_by(|&a, &b| out.logits[b].total_cmp(&out.logits[a]));
        let want_top: Vec<usize> =
            want["top5"].as_array().unwrap().iter().map(|t| t[0].as_u64().unwrap() as usize).collect();
        assert_eq!(&idx[..5], &want_top[..], "{name}: top-5");
        // PNG decodes to the same pixels as Pillow; JPEG does not (image's zune-jpeg and
        // Pillow's libjpeg-turbo differ in IDCT rounding and chroma upsampling), so a JPEG
        // gets the stated looser tolerances and the same top-5.
        let (p_tol, f_tol) = if name.ends_with(".jpg") { (2e-3, 2e-2) } else { (1e-4, 1e-4) };
        let max = out.logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let z: f64 = out.logits.iter().map(|&l| (l as f64 - max).exp()).sum();
        let mut dp = 0f64;
        for t in want["top5"].as_array().unwrap() {
            let p = (out.logits[t[0].as_u64().unwrap() as usize] as f64 - max).exp() / z;
            dp = dp.max((p - t[2].as_f64().unwrap()).abs());
        }
        let first8 = floats(&want["pooled_feature_1280_first8"]);
        let d8 = out.features[..8].iter().zip(&first8).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        let l2 = out.features.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt();
        let wl2 = want["pooled_feature_l2"].as_f64().unwrap();
        eprintln!("{name}: top-5 probabilities max-abs {dp:e}, features first8 max-abs {d8:e}, L2 {l2} vs {wl2}");
        assert!(dp <= p_tol, "{name}: top-5 probabilities differ by {dp:e} (tolerance {p_tol})");
        assert!(d8 <= f_tol, "{name}: first 8 features differ by {d8:e} (tolerance {f_tol})");
        assert!((l2 - wl2).abs() <= f_tol, "{name}: L2 {l2} vs {wl2} (tolerance {f_tol})");
    }
}

/// With scipy's polyphase design the resampled signal is librosa's `res_type="polyphase"`
/// load and the features agree to 1e-3; the default (`HIGH`) filter is compared with
/// librosa's default soxr_hq load under the stated, looser tolerances (the filters differ
/// near Nyquist, which moves the zero-crossing rate and the centroid most).
#[test]
fn audio_features_agree_with_librosa_on_speech_clips() {
    let dir = models().join("speech");
    let r = fixture("audio_reference.json");
    let mut failures = Vec::new();
    for (clip, want) in r["clips"].as_object().unwrap() {
        let bytes = std::fs::read(dir.join(clip)).unwrap();
        let high = audio::extract_wav(&bytes).unwrap();
        let poly = audio::extract_wav_with(&bytes, audio::POLYPHASE).unwrap();
        assert_eq!(high.len(), audio::AUDIO_DIM);
        // (peer, MFCC abs, log-mel dB abs, relative for rms/zcr/centroid mean and std).
        let peers: [(&str, f64, f64, [f64; 6]); 2] =
            [("polyphase", 1e-3, 1e-3, [1e-4; 6]), ("soxr_hq", 0.1, 0.1, [0.01, 0.02, 0.15, 0.35, 0.05, 0.15])];
        for (peer, mfcc_tol, mel_tol, rel_tol) in peers {
            let w = floats(&want[peer]);
            let got = if peer == "polyphase" { &poly } else { &high };
            let mut worst = [0f64; 3];
            for (i, (g, w)) in got.iter().zip(&w).enumerate() {
                let g = *g as f64;
                let (group, err, tol) = match i {
                    0..40 => (0, (g - w).abs(), mfcc_tol),
                    40..120 => (1, (g - w).abs(), mel_tol),
                    _ => (2, (g - w).abs() / w.abs().max(1e-3), rel_tol[i - 120]),
                };
                worst[group] = f64::max(worst[group], err);
                failures.push(
                    (err > tol).then(|| format!("{clip} vs librosa ({peer}): value {i}: {g} vs {w} (tolerance {tol})")),
                );
            }
            eprintln!(
                "{clip} vs librosa ({peer}): worst mfcc {:.4}, log-mel {:.4} dB, rms/zcr/centroid rel {:.5}",
                worst[0], worst[1], worst[2]
            );
        }
    }
    let failures: Vec<String> = failures.into_iter().flatten().collect();
    assert!(failures.is_empty(), "{} values out of tolerance:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn batched_same_length_text_is_bit_identical_to_alone() {
    let m = t0_embed::text::TextModel::load(&models().join("all-minilm-l6-v2")).unwrap();
    let words = ["store", "clinic", "region", "sales", "patient", "visit", "price", "listing", "garden", "report"];
    let mut by_len: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
    for i in 0..400usize {
        let s: Vec<&str> = (0..(3 + i % 9)).map(|k| words[(i * 7 + k * 3) % words.len()]).collect();
        let s = s.join(" ");
        by_len.entry(m.token_len(&s).unwrap()).or_default().push(s);
    }
    let mut checked = 0;
    for texts in by_len.values() {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let batch = m.embed_same_length(&refs).unwrap();
        for (t, v) in refs.iter().zip(&batch) {
            assert_eq!(&m.embed(t).unwrap(), v, "{t}");
            checked += 1;
        }
    }
    assert_eq!(checked, 400);
}
