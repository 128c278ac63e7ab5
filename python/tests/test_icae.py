"""The Python package end to end: loading (GGUF and Hugging Face folder), compress -> answer /
reconstruct equal to the CLI's output, batched = one by one, slot files, the Hugging Face bridge,
the golden check, errors, Ctrl-C during training, and memory over many calls."""
import os
import signal
import subprocess

import pytest
import torch

import icae
from conftest import DEMO, read_safetensors


def max_rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


# --- a Hugging Face folder (the tiny golden model): tensors equal to the original stack's -------

@pytest.fixture(scope="module")
def tiny(golden):
    return icae.load(golden / "base", golden / "icae.safetensors")


def test_compress_ids_gives_the_golden_slots_as_a_torch_tensor(tiny, golden):
    ref = read_safetensors(golden / "golden.safetensors")
    slots = tiny.compress(ref["context_ids"][0].tolist())
    assert isinstance(slots, icae.Slots) and isinstance(slots.tensor, torch.Tensor)
    assert slots.kind == "embedding" and len(slots) == 24 and slots.context_tokens == 75
    assert max_rel(slots.tensor, ref["memory_slots"]) <= 1e-4
    # The tensor is the Slots' own memory, not a copy: writing through it changes the Slots.
    scratch = tiny.compress([3, 4, 5, 6])
    scratch.tensor.mul_(0)
    assert scratch.tensor.abs().sum().item() == 0
    greedy = tiny.run([tiny.reconstruct_row(slots)], max_new_tokens=16, use_model_stop_ids=False)[0].ids
    assert greedy == ref["ae_greedy_ids"].tolist()


def test_check_golden_from_python(golden):
    report = icae.check_golden(golden)
    assert report["ok"], [i for i in report["items"] if not i["ok"]]
    assert len(report["items"]) >= 10


def test_batched_run_equals_one_by_one(tiny):
    contexts = [list(range(3, 3 + n)) for n in (20, 45, 75)]
    slots = tiny.compress(contexts)
    rows = [tiny.reconstruct_row(s) for s in slots] + [tiny.answer_row(slots[0], [5, 6, 7, 8])]
    together = tiny.run(rows, max_new_tokens=12)
    alone = [tiny.run([r], max_new_tokens=12)[0] for r in rows]
    assert [c.ids for c in together] == [c.ids for c in alone]


def test_slot_files_round_trip_and_refuse_another_adapter(tiny, golden, tmp_path):
    slots = tiny.compress(list(range(3, 50)))
    path = tmp_path / "doc.slots.safetensors"
    slots.save(str(path))
    back = icae.Slots.load(str(path))
    assert back.kind == slots.kind and back.count == slots.count and back.context_tokens == 47
    assert back.adapter_fingerprint == slots.adapter_fingerprint
    assert torch.equal(back.tensor, slots.tensor.float())
    assert tiny.reconstruct(back, max_new_tokens=8) == tiny.reconstruct(slots, max_new_tokens=8)
    other = icae.load(golden.parent / "tiny-mistral" / "base", golden.parent / "tiny-mistral" / "icae.safetensors")
    with pytest.raises(icae.Mismatch, match="another base model"):
        other.reconstruct(back)


def test_hugging_face_reads_icae_slots_as_inputs_embeds(tiny, golden):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(golden / "base"), dtype=torch.float32).eval()
    slots = tiny.compress(list(range(3, 78)))
    for row in (tiny.reconstruct_row(slots), tiny.answer_row(slots, [9, 10, 11])):
        embeds = tiny.decoder_embeddings(row)
        with torch.no_grad():
            theirs = hf(inputs_embeds=embeds.unsqueeze(0)).logits[0]
        assert max_rel(tiny.logits(row), theirs) <= 1e-4


def test_errors_are_python_exceptions_that_name_the_problem(golden, tiny):
    with pytest.raises(icae.Error, match="no-such-model") as e:
        icae.load("/no-such-model.gguf")
    assert isinstance(e.value, (icae.Io, icae.BadInput))
    with pytest.raises(icae.Mismatch):  # tiny-llama's adapter on tiny-mistral's base
        icae.load(golden.parent / "tiny-mistral" / "base", golden / "icae.safetensors")
    with pytest.raises(icae.Mismatch, match="wrong width"):
        tiny.reconstruct(torch.zeros(8, 7))
    with pytest.raises(icae.Usage, match="unknown decoding option 'temprature'"):
        tiny.reconstruct(tiny.compress([3, 4, 5]), temprature=0.5)
    with pytest.raises(icae.Usage, match="unknown option"):
        icae.load(golden / "base", dveice="cpu")
    with pytest.raises(icae.Usage, match="--stepz|steps|extra"):
        icae.pretrain(model=str(golden / "base"), out="/tmp/never", stepz=3)


def test_no_leak_over_1000_compress_calls(tiny):
    def rss_kb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    ids = list(range(3, 60))
    for _ in range(100):  # warm-up: allocator pools, caches
        tiny.compress(ids)
    before = rss_kb()
    for _ in range(1000):
        tiny.compress(ids)
    grown_mb = (rss_kb() - before) / 1024
    assert grown_mb < 20, f"RSS grew by {grown_mb:.1f} MB over 1,000 compress calls"


# --- the default GGUF model and the bundled adapters: equal to the CLI, token for token ---------

def cli_text(cli, *args):
    out = subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True, check=True)
    return out.stdout[:-1] if out.stdout.endswith("\n") else out.stdout


def test_gguf_reconstruct_and_answer_equal_the_cli(gguf, cli, heldout_text, tmp_path):
    context = tmp_path / "context.txt"
    context.write_text(heldout_text)
    m = icae.load(gguf, DEMO / "adapter.safetensors", threads=2)
    assert m.info["slot_kind"] == "kv"
    slots = m.compress(heldout_text)
    assert slots.tensor.dim() == 5 and slots.kind == "kv"
    ours = m.reconstruct(slots, max_new_tokens=40)
    assert ours == cli_text(cli, "ask", "--model", gguf, "--adapter", DEMO / "adapter.safetensors",
                            "--context", context, "--reconstruct", "-n", 40, "--threads", 2)
    # Streaming gives the same text, piece by piece.
    pieces = list(m.reconstruct(slots, max_new_tokens=40, stream=True))
    assert len(pieces) > 1 and "".join(pieces) == ours

    ft = icae.load(gguf, DEMO / "adapter-ft.safetensors", threads=2)
    question = "What is this passage about?"
    answer = ft.answer(ft.compress(heldout_text), question, max_new_tokens=24)
    assert answer == cli_text(cli, "ask", "--model", gguf, "--adapter", DEMO / "adapter-ft.safetensors",
                              "--context", context, "-p", question, "-n", 24, "--threads", 2)
    assert ft.tokenizer.decode(ft.tokenizer.encode("Call me Ishmael.")) == "Call me Ishmael."


def test_eval_ae_equals_the_cli(gguf, cli):
    import json
    m = icae.load(gguf, DEMO / "adapter.safetensors", threads=2)
    ours = icae.eval_ae(m, DEMO / "heldout.jsonl", max_samples=2, progress=False)
    theirs = json.loads(cli_text(cli, "eval", "ae", "--model", gguf, "--adapter", DEMO / "adapter.safetensors",
                                 "--data", DEMO / "heldout.jsonl", "--max-samples", 2, "--json", "--threads", 2))
    for key in ("bleu4", "corpus_bleu4", "exact_prefix", "token_accuracy"):
        assert ours[key] == pytest.approx(theirs["mean"][key], abs=1e-9), key
    assert len(ours["samples"]) == 2


# --- training ----------------------------------------------------------------------------------

def test_pretrain_reports_each_update_and_ctrl_c_leaves_a_resumable_run(tiny_text_model, corpus_dir, tmp_path):
    out = tmp_path / "run"
    seen = []

    def on_record(r):
        seen.append(r)
        if r["record"] == "step" and r["step"] == 2:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would

    options = dict(model=tiny_text_model, train=[corpus_dir / "moby-dick"], out=out, k=4, max_context=32, lora_r=4,
                   steps=6, batch=2, save_every=0, eval_every=0, seed=3, progress=False)
    with pytest.raises(KeyboardInterrupt, match="resume"):
        icae.pretrain(on_record=on_record, **options)
    assert [r["step"] for r in seen if r["record"] == "step"] == [1, 2]
    assert all(r["loss"] > 0 for r in seen if r["record"] == "step")
    assert (out / "checkpoint.safetensors").is_file() and (out / "adapter.safetensors").is_file()
    steps = []
    icae.pretrain(resume=out, on_record=lambda r: steps.append(r["step"]), progress=False)
    assert steps == [3, 4, 5, 6]
    m = icae.load(tiny_text_model, out / "adapter.safetensors")
    assert len(m.compress("Call me Ishmael. Some years ago, never mind how long")) % 4 == 0


def test_an_exception_in_the_callback_stops_training_and_arrives(tiny_text_model, corpus_dir, tmp_path):
    class Stop(Exception):
        pass

    def on_record(r):
        raise Stop("from the callback")

    with pytest.raises(Stop):
        icae.pretrain(model=tiny_text_model, train=[corpus_dir / "moby-dick"], out=tmp_path / "run", k=4,
                      max_context=32, lora_r=4, steps=5, batch=2, eval_every=0, on_record=on_record, progress=False)
    assert (tmp_path / "run" / "checkpoint.safetensors").is_file()  # saved on the way out


def test_version_and_help_come_from_the_cli():
    assert icae.__version__.count(".") == 2
    assert "--max-context" in icae.help("pretrain") and "--max-context" in icae.pretrain.__doc__


def test_the_quickstart_example_runs(gguf):
    script = DEMO.parents[1] / "examples" / "python" / "quickstart.py"
    out = subprocess.run([os.sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "reconstructed:" in out.stdout and "answer:" in out.stdout and "trained" in out.stdout


# --- long calls: the GIL is released, Ctrl-C interrupts ----------------------------------------

LONG_DECODE = """
import sys, icae
m = icae.load(sys.argv[1] + "/base", sys.argv[1] + "/icae.safetensors")
slots = m.compress(list(range(3, 60)))
print("decoding", flush=True)
try:
    m.reconstruct(slots, max_new_tokens=200000, use_model_stop_ids=False)
    print("finished")
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_interrupts_a_long_decode(golden):
    import time
    p = subprocess.Popen([os.sys.executable, "-c", LONG_DECODE, str(golden)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "decoding"
    time.sleep(1.0)
    sent = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    assert out.strip() == "interrupted" and time.monotonic() - sent < 5


def test_other_threads_run_during_a_long_call(tiny):
    import threading
    slots = tiny.compress(list(range(3, 60)))
    ticks = [0]
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks[0] += 1

    t = threading.Thread(target=count)
    t.start()
    try:
        before = ticks[0]
        tiny.reconstruct(slots, max_new_tokens=400, use_model_stop_ids=False)
        during = ticks[0] - before
    finally:
        done.set()
        t.join()
    assert during > 1000  # the counting thread ran while icae decoded


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_slots_equal_the_cpu_ones(golden, tiny):
    gpu = icae.load(golden / "base", golden / "icae.safetensors", device="cuda")
    ids = list(range(3, 78))
    a, b = gpu.compress(ids), tiny.compress(ids)
    assert a.tensor.is_cuda and max_rel(a.tensor.cpu(), b.tensor) <= 1e-4
    assert gpu.reconstruct(a, max_new_tokens=8) == tiny.reconstruct(b, max_new_tokens=8)


def test_python_dash_m_icae_is_the_cli(cli):
    for args in (["generate"], ["frobnicate"], ["generate", "--model", "/no-such-model"]):
        ours = subprocess.run([os.sys.executable, "-m", "icae", *args], capture_output=True, text=True)
        theirs = subprocess.run([str(cli), *args], capture_output=True, text=True)
        assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr), args
