#!/usr/bin/env python3
"""Reference outputs of SmolLM2-135M-Instruct (a GGUF file) from Hugging Face transformers + gguf.

transformers dequantises the GGUF itself (through the `gguf` package) and undoes llama.cpp's Q/K
row permutation, so its numbers are an independent reference for icae's GGUF loader, tokenizer and
generation. Writes into --out:

  prompts.json        [{"name", "text", "ids"}] the prompts, tokenized by the reference tokenizer
  logits.safetensors  ids_<i> int64 [T], logits_<i> float32 [T, V] for prompt i
  generations.jsonl   {"name", "prompt_ids", "new_ids", "text", "text_until_eos"}: 32 greedy tokens per
                      prompt (EOS does not stop it); the text of those before the first EOS
  tokens.jsonl        per line of --lines: {"ids": [...], "ids_converter": [...]}
  meta.json           versions and settings

The tokenizer: transformers' GGUF converter builds SmolLM2's tokenizer with GPT-2's ByteLevel
pre-tokenizer only, dropping the digit split that SmolLM2's own tokenizer.json (and llama.cpp's
"smollm" pre-tokenizer) applies first. "ids" use the converter's tokenizer with SmolLM2's own
pre-tokenizer restored, Sequence[Digits(individual_digits), ByteLevel]; "ids_converter" are the
converter's ids unchanged (they differ only where whitespace runs precede digits).
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the .gguf file")
    ap.add_argument("--lines", required=True, help="text file, one tokenizer test line per line")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    import torch
    import transformers
    from safetensors.torch import save_file
    from tokenizers import pre_tokenizers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    folder, name = os.path.split(os.path.abspath(a.model))
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    backend = tok.backend_tokenizer
    converter_backend = type(backend).from_str(backend.to_str())
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])

    def encode(b, text):
        return b.encode(text, add_special_tokens=False).ids

    # Tokenization of the fixture lines.
    with open(a.lines, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    with open(os.path.join(a.out, "tokens.jsonl"), "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps({"ids": encode(backend, line), "ids_converter": encode(converter_backend, line)}) + "\n")

    chatml = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
              "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n")
    with open(os.path.join(os.path.dirname(os.path.abspath(a.lines)), "tokenizer_lines.txt"), encoding="utf-8") as f:
        prose = " ".join(f.read().split("\n")[:8])
    prompts = [
        ("chat_capital", chatml.format("What is the capital of France?")),
        ("chat_story", chatml.format("Write a two-sentence story about a lighthouse keeper.")),
        ("plain_fox", "The quick brown fox jumps over the lazy dog. Once upon a time,"),
        ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    "),
        ("numbers", "1, 2, 3, 5, 8, 13, 21, 34,"),
        ("unicode", "Les élèves ont étudié à Zürich et à Москва. 日本語も"),
        ("prose_long", prose),
    ]
    records = []
    for pname, text in prompts:
        # Special tokens written in the text (ChatML markers) are recognised: encode() does so.
        records.append({"name": pname, "text": text, "ids": encode(backend, text)})
    with open(os.path.join(a.out, "prompts.json"), "w", encoding="utf-8") as f:
        json.dump(records, f, ensure_ascii=False, indent=1)

    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    tensors = {}
    gens = []
    with torch.no_grad():
        for i, r in enumerate(records):
            ids = torch.tensor([r["ids"]], dtype=torch.long)
            logits = model(ids).logits[0].float().contiguous()
            tensors[f"ids_{i}"] = ids[0].clone()
            tensors[f"logits_{i}"] = logits
            # Greedy decoding with the KV cache, never stopping at EOS.
            out = model(ids, use_cache=True)
            past = out.past_key_values
            nxt = int(out.logits[0, -1].argmax())
            new = [nxt]
            for _ in range(a.new_tokens - 1):
                out = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
                past = out.past_key_values
                nxt = int(out.logits[0, -1].argmax())
                new.append(nxt)
            eos = model.config.eos_token_id
            until_eos = new[:new.index(eos)] if eos in new else new
            gens.append({"name": r["name"], "prompt_ids": r["ids"], "new_ids": new, "text": tok.decode(new),
                         "text_until_eos": tok.decode(until_eos, skip_special_tokens=True)})
    save_file(tensors, os.path.join(a.out, "logits.safetensors"))
    with open(os.path.join(a.out, "generations.jsonl"), "w", encoding="utf-8") as f:
        for g in gens:
            f.write(json.dumps(g, ensure_ascii=False) + "\n")
    import gguf
    meta = {"model": os.path.abspath(a.model), "transformers": transformers.__version__, "torch": torch.__version__,
            "gguf": getattr(gguf, "__version__", None) or _dist_version("gguf"),
            "tokenizers": _dist_version("tokenizers"), "new_tokens": a.new_tokens, "lines": len(lines),
            "seconds": round(time.time() - t0, 1)}
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


def _dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    sys.exit(main())
