#!/usr/bin/env python3
"""icae against Hugging Face transformers on SmolLM2-135M-Instruct (GGUF): the CTest "reference".

Runs scripts/reference/smollm2_reference.py (transformers + gguf), then the icae CLI on the same
file, and compares:
  tokenization  icae export-tokenizer + icae tokenize --jsonl, ids equal on every fixture line
  logits        icae forward --out, max |icae - transformers| <= LOGITS_ATOL + LOGITS_RTOL * max|logit|
                per prompt, and the same argmax at every position
  generation    32 greedy tokens identical: `icae generate --print-ids --ignore-eos` (KV cache,
                EOS does not stop it), and `icae generate --ids` (greedy, streaming,
                stops at EOS) printing exactly the reference text of the tokens before EOS
Exit 0 all ran checks pass, 1 a check fails, 77 (CTest skip) when the reference stack or the model
is missing.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

SKIP = 77
# float32 on both sides from the same dequantised weights: the differences come only from the
# order of floating-point operations over 30 layers.
# Measured on this machine: at most 1.3e-4 over 7 prompts (logits reach ~40).
LOGITS_ATOL = 1e-3
LOGITS_RTOL = 0.0


def run(cmd, **kw):
    sys.stdout.flush()
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--icae", required=True, help="the icae executable")
    ap.add_argument("--model", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse", action="store_true", help="reuse reference outputs already in workdir")
    a = ap.parse_args()

    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import gguf  # noqa: F401
        from safetensors.torch import load_file
    except ImportError as e:
        print(f"SKIP: the reference stack is not installed ({e}); run scripts/install-deps --reference")
        return SKIP
    if not os.path.isfile(a.model):
        print(f"SKIP: no model {a.model}; run scripts/fetch-model")
        return SKIP
    import torch

    ref = os.path.join(a.workdir, "transformers")
    os.makedirs(a.workdir, exist_ok=True)
    lines_file = os.path.join(a.source_dir, "tests", "data", "tokenizer_lines.txt")
    if not (a.reuse and os.path.isfile(os.path.join(ref, "meta.json"))):
        r = run([sys.executable, os.path.join(a.source_dir, "scripts", "reference", "smollm2_reference.py"),
                 "--model", a.model, "--lines", lines_file, "--out", ref, "--threads", str(a.threads)])
        if r.returncode != 0:
            print(r.stdout[-3000:], r.stderr[-3000:])
            print("FAIL: the reference script failed")
            return 1
    failures, skipped = [], []

    # --- tokenization -------------------------------------------------------------------------
    tok_json = os.path.join(a.workdir, "tokenizer.json")
    r = run([a.icae, "export-tokenizer", "--model", a.model, "--out", tok_json])
    if r.returncode != 0:
        failures.append(f"icae export-tokenizer failed: {r.stderr.strip()}")
    else:
        with open(lines_file, encoding="utf-8") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        stdin = "".join(json.dumps(l, ensure_ascii=False) + "\n" for l in lines)
        r = run([a.icae, "tokenize", "--tokenizer", tok_json, "--jsonl", "--parse-special"], input=stdin)
        if r.returncode != 0:
            failures.append(f"icae tokenize failed: {r.stderr.strip()}")
        else:
            got = [json.loads(l) for l in r.stdout.splitlines()]
            with open(os.path.join(ref, "tokens.jsonl"), encoding="utf-8") as f:
                want = [json.loads(l) for l in f]
            if len(got) != len(want):
                failures.append(f"tokenize: {len(got)} result lines for {len(want)} input lines")
            else:
                bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w["ids"]]
                conv = sum(1 for g, w in zip(got, want) if g != w["ids_converter"])
                print(f"tokenization: {len(want) - len(bad)}/{len(want)} lines identical "
                      f"({sum(len(w['ids']) for w in want)} tokens); {conv} lines differ from "
                      "transformers' unpatched GGUF converter (digit split)")
                for i in bad[:5]:
                    print(f"  line {i + 1}: {lines[i][:80]!r}\n    icae {got[i][:30]}\n    ref  {want[i]['ids'][:30]}")
                if bad:
                    failures.append(f"tokenization differs on {len(bad)} lines")

    # --- logits -------------------------------------------------------------------------------
    with open(os.path.join(ref, "prompts.json"), encoding="utf-8") as f:
        prompts = json.load(f)
    ref_t = load_file(os.path.join(ref, "logits.safetensors"))
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))

    def icae_logits(ids, out):
        r = run([a.icae, "forward", "--model", a.model, "--ids", ",".join(map(str, ids)), "--out", out,
                 "--threads", str(a.threads)], env=env)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip())
        return load_file(out)["logits"].float().reshape(len(ids), -1)

    with tempfile.TemporaryDirectory() as tmp:
        forward_ok = True
        for i, p in enumerate(prompts):
            want = ref_t[f"logits_{i}"]
            try:
                got = icae_logits(p["ids"], os.path.join(tmp, f"l{i}.safetensors"))
            except RuntimeError as e:
                failures.append(f"icae forward failed: {e}")
                forward_ok = False
                break
            diff = (got - want).abs().max().item()
            tol = LOGITS_ATOL + LOGITS_RTOL * want.abs().max().item()
            same_argmax = bool((got.argmax(-1) == want.argmax(-1)).all())
            print(f"logits {p['name']:12s} T={len(p['ids']):3d}: max|diff| {diff:.2e} (tolerance {tol:.2e}), "
                  f"argmax {'identical' if same_argmax else 'DIFFERS'}")
            if diff > tol or not same_argmax:
                failures.append(f"logits of prompt '{p['name']}' differ by {diff:.3e}")

        # --- greedy generation ----------------------------------------------------------------
        with open(os.path.join(ref, "generations.jsonl"), encoding="utf-8") as f:
            gens = [json.loads(l) for l in f]
        have_generate = run([a.icae, "generate", "--help"]).returncode == 0
        if not have_generate:
            skipped.append("icae generate (absent)")
        for g in gens:
            n = len(g["new_ids"])
            if have_generate:
                r = run([a.icae, "generate", "--model", a.model, "--ids", ",".join(map(str, g["prompt_ids"])),
                         "-n", str(n), "--temperature", "0", "--threads", str(a.threads)], env=env)
                text = r.stdout[:-1] if r.stdout.endswith("\n") else r.stdout
                want_text = g.get("text_until_eos")
                if r.returncode != 0:
                    failures.append(f"icae generate failed on '{g['name']}': {r.stderr.strip()[:300]}")
                elif want_text is None:
                    skipped.append(f"generate text of '{g['name']}' (reference output too old)")
                else:
                    same = text == want_text
                    print(f"generate {g['name']:12s}: text {'identical' if same else 'DIFFERS'}"
                          + ("" if same else f"\n  icae {text!r}\n  ref  {want_text!r}"))
                    if not same:
                        failures.append(f"icae generate text of '{g['name']}' differs")
            # Greedy ids with the KV cache (and quantised decoding), EOS not stopping it.
            r = run([a.icae, "generate", "--model", a.model, "--ids", ",".join(map(str, g["prompt_ids"])),
                     "-n", str(n), "--temperature", "0", "--print-ids", "--ignore-eos",
                     "--threads", str(a.threads)], env=env)
            if r.returncode != 0:
                failures.append(f"icae generate --print-ids failed on '{g['name']}': {r.stderr.strip()[:300]}")
                continue
            new = [int(x) for x in r.stdout.strip().split(",") if x]
            same = new == g["new_ids"]
            print(f"greedy   {g['name']:12s}: ids {'identical' if same else 'DIFFER'} for {n} tokens"
                  + ("" if same else f"\n  icae {new}\n  ref  {g['new_ids']}"))
            if not same:
                failures.append(f"greedy generation of '{g['name']}' differs")

    if skipped:
        print("not checked: " + ", ".join(skipped))
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
