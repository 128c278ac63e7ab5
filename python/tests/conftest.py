"""Fixtures of the Python package's tests: where the test data, the default model and the CLI are,
and small safetensors helpers (no dependency beyond torch).

Run by CTest (python/CMakeLists.txt) with PYTHONPATH=build/python, ICAE_CLI=build/icae and
ICAE_SHARED=../shared, or by hand: PYTHONPATH=build/python python -m pytest python/tests"""
import json
import os
import struct
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("ICAE_SHARED", ROOT.parent / "shared"))
CLI = Path(os.environ.get("ICAE_CLI", ROOT / "build" / "icae"))
GGUF = ROOT / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO = ROOT / "models" / "demo"

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32}


def read_safetensors(path):
    """Every tensor of a safetensors file."""
    data = Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        buf = bytearray(data[8 + n + a:8 + n + b])
        out[name] = torch.frombuffer(buf, dtype=_DTYPES[t["dtype"]]).reshape(t["shape"]).clone() if b > a \
            else torch.empty(t["shape"], dtype=_DTYPES[t["dtype"]])
    return out


def write_safetensors(path, tensors):
    names = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        b = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


@pytest.fixture(scope="session")
def golden():
    """A tiny golden model (weights only: it speaks token ids) and its reference tensors."""
    d = SHARED / "testdata" / "golden" / "tiny-llama"
    if not d.is_dir():
        pytest.fail(f"{d} is missing: the tests need ../shared beside the project (or ICAE_SHARED)")
    return d


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory):
    """A tiny random Llama with a real tokenizer (Llama 2's): for training from text in seconds."""
    d = tmp_path_factory.mktemp("tiny-text-model")
    vocab, h, layers, heads, kv, inter = 32000, 32, 2, 4, 2, 64
    (d / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": vocab, "hidden_size": h, "intermediate_size": inter,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
        "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": True,
        "max_position_embeddings": 2048}))
    g = torch.Generator().manual_seed(3)
    w = {"model.embed_tokens.weight": torch.randn(vocab, h, generator=g) * 0.5, "model.norm.weight": torch.ones(h)}
    dh = h // heads
    for i in range(layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = torch.ones(h)
        w[p + "post_attention_layernorm.weight"] = torch.ones(h)
        for name, shape in [("self_attn.q_proj", (heads * dh, h)), ("self_attn.k_proj", (kv * dh, h)),
                            ("self_attn.v_proj", (kv * dh, h)), ("self_attn.o_proj", (h, heads * dh)),
                            ("mlp.gate_proj", (inter, h)), ("mlp.up_proj", (inter, h)), ("mlp.down_proj", (h, inter))]:
            w[p + name + ".weight"] = torch.randn(*shape, generator=g) * 0.1
    write_safetensors(d / "model.safetensors", w)
    (d / "tokenizer.json").write_bytes((SHARED / "testdata" / "tokenizers" / "llama2" / "tokenizer.json").read_bytes())
    return d


@pytest.fixture(scope="session")
def corpus_dir():
    d = SHARED / "corpus"
    if not d.is_dir():
        pytest.fail(f"{d} is missing")
    return d


@pytest.fixture(scope="session")
def gguf():
    """The default model (scripts/fetch-model); the C++ tests that need it skip without it too."""
    if not GGUF.is_file():
        pytest.skip(f"{GGUF} not fetched (scripts/fetch-model)")
    return GGUF


@pytest.fixture(scope="session")
def cli():
    if not CLI.is_file():
        pytest.fail(f"the icae executable {CLI} is missing (set ICAE_CLI)")
    return CLI


@pytest.fixture(scope="session")
def heldout_text():
    """The first held-out passage of the bundled adapter's card."""
    line = (DEMO / "heldout.jsonl").read_text().splitlines()[0]
    return json.loads(line)["text"]
