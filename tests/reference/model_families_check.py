#!/usr/bin/env python3
"""icae against Hugging Face transformers on tiny random models of every supported family and rope
setting: llama (rope default, linear, llama3; config in the older top-level rope_theta/rope_scaling
form too), mistral (GQA), qwen2 (q/k/v bias, tied embeddings). For each: build the model with
transformers, widen its random weights (so mistakes show), save_pretrained, compute logits; then
`icae forward --out` on the saved folder; max |icae - hf| / max |hf| must be <= 1e-4 (float32).
Exit 0 pass, 1 fail, 77 when transformers is missing (CTest skip)."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

try:
    import torch
    import transformers
    from safetensors.torch import load_file
except ImportError:
    print("SKIP: transformers/torch/safetensors not installed")
    sys.exit(77)

BASE = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)

CASES = [
    ("llama-default", "LlamaConfig", {}, None),
    ("llama-linear", "LlamaConfig", {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}}, None),
    ("llama3-rope", "LlamaConfig", {"num_key_value_heads": 2, "rope_parameters": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64, "rope_theta": 500000.0}}, None),
    # The same llama3 settings written the way older checkpoints do (top level + rope_scaling).
    ("llama3-toplevel", "LlamaConfig", {"num_key_value_heads": 2, "rope_parameters": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64, "rope_theta": 500000.0}}, "toplevel"),
    ("mistral-gqa", "MistralConfig", {"num_key_value_heads": 2, "head_dim": 32,
                                      "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}, None),
    ("qwen2-bias-tied", "Qwen2Config", {"num_key_value_heads": 2, "tie_word_embeddings": True}, None),
]


def widen(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))


def to_toplevel(config_path):
    with open(config_path) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters")
    c["rope_theta"] = rp.pop("rope_theta")
    c["rope_scaling"] = rp
    with open(config_path, "w") as f:
        json.dump(c, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--icae", required=True)
    a = ap.parse_args()
    failures = []
    ids = [1 + (i * 37) % 299 for i in range(48)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, cls, extra, form) in enumerate(CASES):
            cfg = getattr(transformers, cls)(**{**BASE, **extra})
            torch.manual_seed(i)
            model = transformers.AutoModelForCausalLM.from_config(cfg).float().eval()
            widen(model, i)
            d = os.path.join(tmp, name)
            model.save_pretrained(d, safe_serialization=True)
            if form == "toplevel":
                to_toplevel(os.path.join(d, "config.json"))
            with torch.no_grad():
                want = model(torch.tensor([ids])).logits[0].double()
            out = os.path.join(tmp, name + ".safetensors")
            r = subprocess.run([a.icae, "forward", "--model", d, "--ids", ",".join(map(str, ids)), "--out", out],
                               capture_output=True, text=True)
            if r.returncode != 0:
                failures.append(f"{name}: icae forward failed: {r.stderr.strip()}")
                continue
            got = load_file(out)["logits"].double()
            err = ((got - want).abs().max() / want.abs().max()).item()
            print(f"{name:18s} max rel. error {err:.2e} (tolerance 1e-4)")
            if err > 1e-4:
                failures.append(f"{name}: error {err:.3e}")
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
