"""Reference audio features for crates/t0-embed/tests/fixtures/audio_reference.json.

librosa computes the same layout as t0_embed::audio (MFCC 20, 40-band log-mel, RMS, ZCR,
spectral centroid; mean then population std over frames) on the speech clips that
scripts/fetch-models.sh puts in $T0CLIP_MODELS/speech. Two loads per clip: librosa's default
resampler (soxr_hq) and scipy's polyphase filter (the design t0-embed implements).

    python scripts/reference/audio.py SPEECH_DIR OUT.json
"""
import hashlib, json, os, sys
import numpy as np, librosa, scipy

speech, out = sys.argv[1], sys.argv[2]
clips = ["Front_Center.wav", "Front_Left.wav", "Rear_Right.wav", "Noise.wav"]

def feats(y, sr):
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
    logmel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=40))
    rms = librosa.feature.rms(y=y)[0]
    zcr = librosa.feature.zero_crossing_rate(y)[0]
    cen = librosa.feature.spectral_centroid(y=y, sr=sr)[0]
    v = []
    for m in (mfcc, logmel):
        v += list(m.mean(axis=1)) + list(m.std(axis=1))
    for s in (rms, zcr, cen):
        v += [s.mean(), s.std()]
    return [float(x) for x in v]

res = {}
for c in clips:
    p = os.path.join(speech, c)
    entry = {"sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()}
    for rt in ("soxr_hq", "polyphase"):
        y, sr = librosa.load(p, sr=16000, res_type=rt)
        entry[rt] = feats(y, sr)
    res[c] = entry
json.dump({"peer": f"librosa {librosa.__version__}, scipy {scipy.__version__}, numpy {np.__version__}",
           "layout": "mfcc20 mean, std; logmel40 mean, std; rms mean, std; zcr mean, std; centroid mean, std",
           "clips": res}, open(out, "w"), indent=0)
print("wrote", out)
