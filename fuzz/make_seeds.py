#!/usr/bin/env python3
"""Writes the small seed corpora under fuzz/corpus/<target>/ (run from anywhere; needs ../shared).

Seeds are tiny on purpose: libFuzzer mutates them byte by byte, and a 2 MB tokenizer.json would
make every execution slow. Tokenizers are cut from the shared test vocabularies to a few hundred
tokens; GGUF and safetensors images are written here field by field.
"""
import json, os, random, struct, sys

root = os.path.dirname(os.path.abspath(__file__))
shared = os.environ.get("ICAE_SHARED", os.path.join(root, "..", "..", "shared"))
rng = random.Random(12)


def out(target, name, data):
    d = os.path.join(root, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# --- safetensors: 8-byte header length, JSON header, data.
def safetensors(tensors, metadata=None):
    header, blob = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob

out("safetensors", "two_tensors", safetensors(
    [("w", "F32", [2, 3], struct.pack("<6f", *range(6))), ("b", "BF16", [4], b"\x80\x3f" * 4)],
    {"format": "pt", "k": "4"}))
out("safetensors", "int_types", safetensors(
    [("ids", "I64", [3], struct.pack("<3q", 1, 5, 9)), ("m", "BOOL", [2], b"\x01\x00"),
     ("h", "F16", [1, 1], b"\x00\x3c"), ("e", "I32", [0], b"")]))
out("safetensors", "empty", safetensors([]))


# --- GGUF v3 images.
T = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7, "str": 8, "arr": 9,
     "u64": 10, "i64": 11, "f64": 12}
PACK = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i", "f32": "<f",
        "bool": "<?", "u64": "<Q", "i64": "<q", "f64": "<d"}

def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b

def gval(kind, v):
    if kind == "str":
        return gstr(v)
    if isinstance(kind, tuple):  # ("arr", element kind)
        return struct.pack("<IQ", T[kind[1]], len(v)) + b"".join(gval(kind[1], x) for x in v)
    return struct.pack(PACK[kind], v)

def gguf(kvs, tensors=(), alignment=32):
    body = b""
    for key, kind, v in kvs:
        body += gstr(key) + struct.pack("<I", T["arr"] if isinstance(kind, tuple) else T[kind]) + gval(kind, v)
    infos, blob = b"", b""
    for name, ne, ttype, data in tensors:
        while len(blob) % alignment:
            blob += b"\0"
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", ttype, len(blob))
        blob += data
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + body + infos
    while len(head) % alignment:
        head += b"\0"
    return head + blob

def rnd(n):
    return bytes(rng.randrange(256) for _ in range(n))

def f16_scale():  # a finite half scale, so dequantised values stay ordinary
    return struct.pack("<e", rng.uniform(-0.1, 0.1))

def q4_0():
    return f16_scale() + rnd(16)

def q8_0():
    return f16_scale() + rnd(32)

meta = [("general.architecture", "str", "llama"), ("general.alignment", "u32", 32),
        ("llama.context_length", "u32", 64), ("llama.rope.freq_base", "f32", 10000.0),
        ("general.tags", ("arr", "str"), ["a", "b"]), ("x.nested", ("arr", "i16"), [1, -2, 3])]
out("gguf", "float_types", gguf(meta, [
    ("f32", [4], 0, struct.pack("<4f", 1, -2, 3.5, 0)), ("f16", [2, 2], 1, struct.pack("<4e", 1, 2, -3, 0.5)),
    ("bf16", [4], 30, b"\x80\x3f" * 4), ("i32", [2], 26, struct.pack("<2i", 7, -7))]))
out("gguf", "quant_blocks", gguf(meta[:2], [
    ("q4_0", [32], 2, q4_0()), ("q4_1", [32], 3, f16_scale() + f16_scale() + rnd(16)),
    ("q5_0", [32], 6, f16_scale() + rnd(4) + rnd(16)), ("q8_0", [32, 2], 8, q8_0() + q8_0())]))
out("gguf", "k_quants", gguf([], [
    ("q4_k", [256], 12, f16_scale() + f16_scale() + rnd(12) + rnd(128)),
    ("q6_k", [256], 14, rnd(128) + rnd(64) + rnd(16) + f16_scale()),
    ("q2_k", [256], 10, rnd(16) + rnd(64) + f16_scale() + f16_scale())]))
out("gguf", "metadata_only", gguf(meta + [("f64", "f64", 1.5), ("b", "bool", True), ("u64", "u64", 2**40),
                                          ("arr_arr", ("arr", "u8"), [1, 2])]))


# --- tokenizers cut down from the shared vocabularies.
def cut_tokenizer(path, keep):
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    vocab = {t: i for t, i in j["model"]["vocab"].items() if i < keep}
    merges = []
    for m in j["model"].get("merges", []):
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    j["model"]["vocab"] = vocab
    j["model"]["merges"] = merges
    j["added_tokens"] = [t for t in j.get("added_tokens", []) if t["id"] < keep]
    return j

texts = ["Hello world, 123!\n", " caf\u00e9 <s> \u4f60\u597d  tabs\tand  spaces", "<|endoftext|>a</s>"]
tok_dir = os.path.join(shared, "testdata", "tokenizers")
small = {}
for name, keep in (("gpt2", 300), ("llama2", 300), ("llama3", 300), ("qwen3", 300)):
    p = os.path.join(tok_dir, name, "tokenizer.json")
    if not os.path.exists(p):
        print("make_seeds: skipping", p, file=sys.stderr)
        continue
    small[name] = cut_tokenizer(p, keep)
    for k, text in enumerate(texts):
        out("tokenizer_json", f"{name}_{k}", json.dumps(small[name], ensure_ascii=False) + "\0" + text)


# --- GGUF tokenizer metadata (a gpt2-style and a llama-style vocabulary).
bpe_tokens = [chr(c) for c in range(33, 127)] + ["\u0120", "\u0120t", "he", "\u0120the", "<|endoftext|>"]
out("gguf_tokenizer", "gpt2", gguf([
    ("tokenizer.ggml.model", "str", "gpt2"), ("tokenizer.ggml.pre", "str", "smollm"),
    ("tokenizer.ggml.tokens", ("arr", "str"), bpe_tokens),
    ("tokenizer.ggml.token_type", ("arr", "i32"), [1] * (len(bpe_tokens) - 1) + [3]),
    ("tokenizer.ggml.merges", ("arr", "str"), ["\u0120 t", "h e", "\u0120t he"]),
    ("tokenizer.ggml.bos_token_id", "u32", len(bpe_tokens) - 1),
    ("tokenizer.ggml.eos_token_id", "u32", len(bpe_tokens) - 1)]))
spm_tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581", "\u2581H", "el", "lo", "\u2581w"]
out("gguf_tokenizer", "llama_scores", gguf([
    ("tokenizer.ggml.model", "str", "llama"),
    ("tokenizer.ggml.tokens", ("arr", "str"), spm_tokens),
    ("tokenizer.ggml.scores", ("arr", "f32"), [0.0] * 259 + [-1.0, -2.0, -3.0, -4.0, -5.0]),
    ("tokenizer.ggml.token_type", ("arr", "i32"), [2, 3, 3] + [6] * 256 + [1] * 5),
    ("tokenizer.ggml.bos_token_id", "u32", 1), ("tokenizer.ggml.eos_token_id", "u32", 2),
    ("tokenizer.ggml.add_bos_token", "bool", True)]))


# --- config.json: the goldens' and variants of the rope settings.
for g in ("tiny-llama", "tiny-mistral"):
    p = os.path.join(shared, "testdata", "golden", g, "base", "config.json")
    if os.path.exists(p):
        with open(p) as f:
            out("config_json", g, f.read())
base = {"model_type": "qwen2", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True,
        "rope_scaling": {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192}, "eos_token_id": [2, 3],
        "sliding_window": 4096, "use_sliding_window": False}
out("config_json", "qwen2_llama3_rope", json.dumps(base))
out("config_json", "linear_rope", json.dumps({**base, "model_type": "llama", "rope_scaling": {"type": "linear", "factor": 2}}))


# --- tokenizer_encode: one byte choosing the shipped vocabulary (0..4), then a text.
for i, text in enumerate(["Hello world, 123!\n",
                          " caf\u00e9  \u4f60\u597d\ttabs  <s> </s> <|endoftext|> <|im_start|>",
                          "don't 12345 \U0001F600 end\r\n"]):
    for k in range(5):
        out("tokenizer_encode", f"seed_{i}_{k}", bytes([k]) + text.encode())


# --- icae_files: slot files and adapters as save_slots / save_adapter write them (tiny shapes),
# and the released ICAE v2 layout (no header).
def f32(n):
    return struct.pack(f"<{n}f", *[rng.uniform(-1, 1) for _ in range(n)])

slot_header = {"format": "icae-slots", "version": 2, "base_fingerprint": "a1b2c3d4e5f60718",
               "adapter_fingerprint": "0123456789abcdef", "mem_size": 2, "compression_rate": 4.0,
               "hidden_size": 64, "context_tokens": 7}
out("icae_files", "slots_v2", safetensors([("slots", "F32", [2, 64], f32(128))], {"icae_slots": json.dumps(slot_header)}))
v1 = {k: v for k, v in slot_header.items() if k not in ("version", "adapter_fingerprint", "context_tokens")}
out("icae_files", "slots_v1", safetensors([("slots", "F32", [4, 64], f32(256))], {"icae_slots": json.dumps(v1)}))

def lora_tensors(layers, modules, r, width, dtype="F32"):
    t = []
    for layer in range(layers):
        for m in modules:
            part = "mlp" if m in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            key = f"icae.base_model.model.model.layers.{layer}.{part}.{m}"
            t.append((key + ".lora_A.default.weight", dtype, [r, width], f32(r * width)))
            t.append((key + ".lora_B.default.weight", dtype, [width, r], f32(width * r)))
    return t

adapter_header = {"format": "icae-adapter", "version": 1,
                  "base_model": {"name": "tiny-llama", "fingerprint": "a1b2c3d4e5f60718", "model_type": "llama",
                                 "vocab_size": 512, "hidden_size": 64, "num_hidden_layers": 2},
                  "mem_size": 2, "compression_rate": 4.0,
                  "lora": {"r": 2, "alpha": 32.0, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
                  "special_ids": {"pad": 512, "mem_first": 513, "mem_last": 514, "ae": 515, "lm": 516, "ft": 517},
                  "projector": "linear", "chat_template": "none", "notes": "seed",
                  "training": {"steps": 3, "options": {"lr": 1e-4}}}
out("icae_files", "adapter_ours", safetensors(
    lora_tensors(2, ["q_proj", "v_proj"], 2, 4) +
    [("memory_token_embed.weight", "F32", [5, 4], f32(20)), ("projector.weight", "F32", [4, 4], f32(16)),
     ("projector.bias", "F32", [4], f32(4))],
    {"format": "pt", "icae": json.dumps(adapter_header)}))
out("icae_files", "adapter_released", safetensors(
    lora_tensors(2, ["q_proj", "k_proj", "gate_proj"], 1, 3) +
    [("memory_token_embed.weight", "F32", [4, 3], f32(12)), ("model.embed_tokens.weight", "F32", [2, 3], f32(6))]))


# --- data: a mode byte (bits 0-1: file name .txt / .jsonl / .json / none; 2: PwC; 3: the
# evaluation reader; 4: blank-line blocks; 5: strict), a limits byte (max_context 1 + low 5 bits,
# min_context the top 3), then the file.
texts = {
    "txt": "The quick brown fox.\n\nJumps over the lazy dog, twice.\n\n\nAnd then 42 more words here.\n",
    "jsonl": '{"text": "Hello there, world."}\n\n{"text": "caf\\u00e9 \\u4f60\\u597d"}\n{"txt": 1}\nnot json\n',
    "pwc": '{"input": "A long context about apples.", "prompt": "What fruit?", "answer": "Apples."}\n'
           '{"input": "", "prompt": "x", "answer": "y"}\n{"input": "ctx", "prompt": 3, "answer": "z"}\n',
}
for mode, limits, name in [(0, 0x47, "txt"), (16, 0x23, "txt"), (1, 0x2f, "jsonl"), (5, 0x1f, "pwc"),
                           (33, 0x27, "jsonl"), (8, 0, "txt"), (9, 0, "jsonl"), (13, 0, "pwc"), (2, 0x44, "jsonl")]:
    out("data", f"mode_{mode}_{name}", bytes([mode, limits]) + texts[name].encode())


# --- request: a selector byte (mod 5: compress, answer, reconstruct, generate, chat; bit 3: vocab
# 512 instead of 49152; bit 4: tiny limits; bit 5: no tokenizer), then the JSON body.
bodies = [
    (0, {"text": "Some context to compress."}), (0, {"ids": [1, 2, 3, 400]}),
    (1, {"slots_id": "s-0123", "prompt": "What is it?", "max_tokens": 16, "temperature": 0.7, "top_p": 0.9,
         "top_k": 40, "seed": 7, "stream": True}),
    (1, {"ids": [5, 6, 7], "prompt_ids": [8, 9], "max_tokens": None}),
    (2, {"text": "Reconstruct me.", "max_tokens": 32, "no_repeat_ngram_size": 3, "repetition_penalty": 1.2}), (3, {"prompt": "Once upon a time", "seed": 18446744073709551615}),
    (4, {"model": "icae", "messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "slots_id": "s-0123"},
                                       {"role": "user", "content": "Summarise."}],
         "max_completion_tokens": 20, "n": 1, "stream_options": {"include_usage": True}}),
    (4, {"messages": [{"role": "user", "content": "Hi", "name": "me"}], "user": "u", "top_p": 1}),
]
for i, (route, body) in enumerate(bodies):
    out("request", f"route_{route}_{i}", bytes([route]) + json.dumps(body).encode())
out("request", "route_1_malformed", bytes([1]) + b'{"ids": [1, 2')
