"""The Python package's call overhead: the same compress and answer (batch 1, random ids, no stop
ids: `icae bench`'s case) timed through `import icae` and by the C++ CLI's own `icae bench`, in
the same run on the same machine. Medians over --reps; the CLI's numbers are its JSON's
compress_ms and decode_slots_ms ([slots, FT, 8-token prompt] prefill + --gen tokens).

    PYTHONPATH=build/python python bench/python_overhead.py --model M.gguf --adapter A.safetensors
(scripts/bench-python runs it on the default model and on the tiny golden model, whose calls are
short enough for the overhead itself to show.)"""
import argparse
import json
import random
import statistics
import subprocess
import time

import icae


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--adapter", required=True)
    p.add_argument("--cli", default="build/icae")
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--gen", type=int, default=128)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    m = icae.load(a.model, a.adapter, threads=a.threads)
    vocab = m.info["vocab_size"]
    rng = random.Random(1234)
    context = [rng.randrange(3, vocab) for _ in range(a.context)]
    prompt = [rng.randrange(3, vocab) for _ in range(8)]
    slots = m.compress(context)  # warm-up
    row = m.answer_row(slots, prompt)
    m.run([row], max_new_tokens=a.gen, use_model_stop_ids=False)
    py_compress = median_ms(lambda: m.compress(context), a.reps)
    py_answer = median_ms(lambda: m.run([row], max_new_tokens=a.gen, use_model_stop_ids=False), a.reps)

    cli_compress, cli_answer = [], []
    for _ in range(a.reps):
        out = subprocess.run([a.cli, "bench", "--model", a.model, "--adapter", a.adapter, "--batch", "1", "--context",
                              str(a.context), "--gen", str(a.gen), "--threads", str(a.threads), "--json"],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)["rows"][0]
        cli_compress.append(r["compress_ms"])
        cli_answer.append(r["decode_slots_ms"])
    result = {
        "model": a.model, "adapter": a.adapter, "context": a.context, "gen": a.gen, "threads": a.threads,
        "python_compress_ms": py_compress, "cli_compress_ms": statistics.median(cli_compress),
        "python_answer_ms": py_answer, "cli_answer_ms": statistics.median(cli_answer),
    }
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{a.model} + {a.adapter}: context {a.context}, {a.gen} tokens, {a.threads} threads, median of {a.reps}")
    for what in ("compress", "answer"):
        py, c = result[f"python_{what}_ms"], result[f"cli_{what}_ms"]
        print(f"  {what:9s} python {py:9.2f} ms   C++ CLI {c:9.2f} ms   python - C++ {py - c:+8.2f} ms ({(py / c - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
