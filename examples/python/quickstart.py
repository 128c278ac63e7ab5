"""icae from Python in one page: compress a passage into memory slots, get it back, ask about it,
keep the slots in a file, and train an adapter for 20 updates.

    PYTHONPATH=build/python python examples/python/quickstart.py      (after scripts/build)
    python examples/python/quickstart.py                              (after pip install)

Needs the default model (scripts/fetch-model) and ../shared beside the project (the corpus).
"""
import json
import pathlib
import sys
import tempfile

import icae

root = pathlib.Path(__file__).resolve().parents[2]
model = root / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
demo = root / "models" / "demo"
if not model.is_file():
    sys.exit(f"{model} is missing: run scripts/fetch-model first")
passage = json.loads((demo / "heldout.jsonl").read_text().splitlines()[0])["text"]

# 1. Compress and reconstruct with the bundled key/value-slot adapter (4x: 32 slots per 128 tokens).
m = icae.load(model, adapter=demo / "adapter.safetensors", threads=2)
slots = m.compress(passage)
print(slots)  # icae.Slots(kind='kv', count=..., ...); slots.tensor is a torch.Tensor
print("reconstructed:", m.reconstruct(slots, max_new_tokens=160, no_repeat_ngram_size=3))

# 2. Slot files: compress once, ask many times (they remember which model and adapter made them).
with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / "passage.slots.safetensors"
    slots.save(str(path))
    again = icae.Slots.load(str(path))
    assert again.count == slots.count

    # 3. Answers from the fine-tuned adapter's (key/value) slots, streamed as they decode.
    ft = icae.load(model, adapter=demo / "adapter-ft.safetensors", threads=2)
    print("answer: ", end="")
    for piece in ft.answer(ft.compress(passage), "What is this passage about?", stream=True, max_new_tokens=60):
        print(piece, end="", flush=True)
    print()

    # 4. Training: 20 updates of a small adapter on a few chapters, with a callback for metrics.
    corpus = root.parent / "shared" / "corpus" / "moby-dick"
    losses = []
    run = icae.pretrain(model=str(model), train=[str(corpus)], out=str(pathlib.Path(tmp) / "run"), k=4,
                        max_context=32, lora_r=4, batch=2, steps=20, warmup=2, lr=1e-3, eval_every=0, threads=2,
                        on_record=lambda r: losses.append(r["loss"]) if r["record"] == "step" else None)
    print(f"trained {run}: loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} updates")
