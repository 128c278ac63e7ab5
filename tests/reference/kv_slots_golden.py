#!/usr/bin/env python3
"""Golden numbers for ICAE "key/value slots" (KV slots), made with Hugging Face transformers + peft.

What it computes
----------------
The ICAE encoder (base model + LoRA adapter) compresses a context into memory slots. The classic
slot is the encoder's last hidden state at a memory position, fed to the decoder (the same base
model, adapter disabled) as an input embedding. A KV slot instead keeps, for every layer, the
encoder's key *before* rotary embedding and its value at that memory position:

    slot shape  [layers, 2, kv_heads, head_dim]         (index 0 = key, 1 = value)
    a context   [n*k, layers, 2, kv_heads, head_dim]    (segments in order, k slots each)

A decoder sequence marks each slot with a placeholder id (V+1). In every layer, the placeholder's
key is the slot key rotated by RoPE at the placeholder's own position, and its value is the slot
value; the other positions are ordinary tokens (base ids, or AE/LM/FT ids embedded with their
memory_token_embed row); attention is causal.

For each model folder under --golden-dir (tiny-llama, tiny-mistral) this writes
<out-dir>/<name>.safetensors (float32 unless stated) with

    kv_slots [n*k, L, 2, Hkv, D]        KV slots of golden context_ids
    kv_slots1                           KV slots of golden context1_ids
    ae_step_logits [16, V]              decoder fed [n*k placeholders, AE], 16 greedy steps
                                        (argmax over the base vocab, not stopping at EOS); row i =
                                        the logits of the step that picks token i
    ae_greedy_ids [16] (int64)
    {ae,lm,ft}_loss [1]                 mean cross-entropy of logits[:, :-1] (base vocab) against
                                        labels[:, 1:], ignoring -100, on the golden
                                        {ae,lm,ft}_prompt_answer_ids / _labels, with KV slots
                                        recomputed from context_ids with gradients on
    {ae,lm,ft}_grad_memory_token_embed  [k+3, H], gradient of that loss
    {ae,lm,ft}_grad_layer0_q_lora_A     [r, H], gradient of that loss

How
---
* Model: base folder loaded in float32 with eager attention, wrapped by peft LoraConfig(r,
  lora_alpha, target_modules, dropout 0) and loaded with the LoRA tensors of icae.safetensors.
* Multi-span compression as in ICAE v2: n = ceil(L / (k*r)) segments of ceil(L/n) tokens, each
  encoded on its own as [segment tokens, memory_token_embed rows 0..k-1], positions from 0.
* KV capture: forward hooks on each layer's self_attn.k_proj / v_proj (their outputs include the
  LoRA delta where those modules are targeted) during the encoder pass.
* KV decoder: the whole decoder sequence is run with placeholder inputs embedded as zeros, and
  hooks on k_proj / v_proj *replace* the output at placeholder positions by the slot's pre-RoPE
  key / value; HF then rotates the key at that position. Non-placeholder outputs are exact because
  they see placeholders only through K/V (and logits at placeholder positions are asserted never to
  enter a loss). Gradients flow through the hooks into the slots and the encoder.
* Cross-check (always run, must agree to 1e-5 relative): the AE loss again with a DynamicCache
  pre-filled with the slot keys rotated by the model's own rotary embedding at positions 0..n*k-1
  and the slot values, then the remaining ids run with position_ids starting at n*k.
* --check-embedding first reproduces the existing embedding-slot goldens (memory_slots,
  memory_slots1, ae_step_logits/ae_greedy_ids, losses and gradients) with the same harness; this
  validation also runs before anything is written.

Versions used to make the committed files: torch 2.11.0, transformers 5.17.0, peft 0.22.0,
safetensors 0.8.0 (float32 on CPU). See tests/data/golden-kv/README.md.
"""
import argparse
import datetime
import importlib
import json
import math
import os
import sys
from contextlib import contextmanager

import torch
import torch.nn.functional as F
import transformers
import peft
from safetensors.torch import load_file, save_file

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = ("tiny-llama", "tiny-mistral")
GREEDY_STEPS = 16
TENSOR_TOL = 1e-4   # max|a-b| / max|b|
LOSS_TOL = 1e-5     # relative


class Icae:
    """Base model + LoRA adapter + memory_token_embed, read from one golden folder."""

    def __init__(self, folder):
        with open(os.path.join(folder, "meta.json")) as f:
            self.meta = meta = json.load(f)
        base = transformers.AutoModelForCausalLM.from_pretrained(
            os.path.join(folder, "base"), dtype=torch.float32, attn_implementation="eager")
        lora = peft.LoraConfig(r=meta["lora_r"], lora_alpha=meta["lora_alpha"],
                               target_modules=meta["lora_target_modules"], lora_dropout=0.0,
                               bias="none", task_type="CAUSAL_LM")
        self.model = peft.get_peft_model(base, lora)
        self.model.eval()  # dropout is 0 anyway; eval keeps that true whatever the config says

        tensors = load_file(os.path.join(folder, "icae.safetensors"))
        self.mem_embed = tensors.pop("memory_token_embed.weight").clone().requires_grad_(True)
        params = dict(self.model.named_parameters())
        lora_names = {n for n in params if ".lora_" in n}
        loaded = set()
        with torch.no_grad():
            for key, value in tensors.items():
                # checkpoint names are peft's own names with an "icae." prefix
                name = key[len("icae."):] if key.startswith("icae.") else key
                if name not in params:
                    raise KeyError(f"{key}: no such parameter in the peft model")
                if params[name].shape != value.shape:
                    raise ValueError(f"{key}: shape {tuple(value.shape)} != {tuple(params[name].shape)}")
                params[name].copy_(value)
                loaded.add(name)
        if loaded != lora_names:
            raise KeyError(f"LoRA parameters not in icae.safetensors: {sorted(lora_names - loaded)}")
        # Only the ICAE-trainable tensors need gradients (LoRA + memory_token_embed).
        for name, p in params.items():
            p.requires_grad_(name in lora_names)
        self.q_lora_A0 = params["base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"]

        cfg = self.model.get_base_model().config
        self.V = cfg.vocab_size
        self.k = meta["mem_size"]
        self.rate = meta["mean_compression_rate"]
        self.placeholder = self.V + 1
        self.n_layers = cfg.num_hidden_layers
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.layers = self.model.get_base_model().model.layers
        assert meta["ae_token_id"] == self.V + 1 + self.k

    def zero_grad(self):
        self.mem_embed.grad = None
        for p in self.model.parameters():
            p.grad = None

    def embed(self, ids):
        """ids [T] -> [T, H]: base ids via the base table, ids > V via memory_token_embed rows.
        Placeholder positions (V+1) come out as memory row 0; callers overwrite them."""
        table = self.model.get_base_model().model.embed_tokens
        out = table(ids.clamp(max=self.V - 1))
        special = ids > self.V
        rows = self.mem_embed[(ids[special] - self.V - 1)]
        return out.masked_scatter(special[:, None], rows) if special.any() else out

    def segments(self, length):
        n = math.ceil(length / (self.k * self.rate))
        s = math.ceil(length / n)
        return [(i * s, min((i + 1) * s, length)) for i in range(n)]

    # ---------------------------------------------------------------- encoder (adapter on)

    @contextmanager
    def _capture_kv(self, store):
        handles = []
        for li, layer in enumerate(self.layers):
            for which, proj in ((0, layer.self_attn.k_proj), (1, layer.self_attn.v_proj)):
                def hook(_m, _inp, out, li=li, which=which):
                    store[(li, which)] = out
                handles.append(proj.register_forward_hook(hook))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def encode(self, context_ids):
        """context_ids [L] -> (embedding slots [n*k, H], KV slots [n*k, layers, 2, Hkv, D])."""
        emb_slots, kv_slots = [], []
        for a, b in self.segments(context_ids.numel()):
            x = torch.cat([self.embed(context_ids[a:b]), self.mem_embed[: self.k]], 0)[None]
            store = {}
            with self._capture_kv(store):
                out = self.model(inputs_embeds=x, output_hidden_states=True)
            emb_slots.append(out.hidden_states[-1][0, -self.k:])
            per_layer = []
            for li in range(self.n_layers):
                kv = [store[(li, w)][0, -self.k:].reshape(self.k, self.n_kv, self.head_dim) for w in (0, 1)]
                per_layer.append(torch.stack(kv, 1))          # [k, 2, Hkv, D]
            kv_slots.append(torch.stack(per_layer, 1))       # [k, layers, 2, Hkv, D]
        return torch.cat(emb_slots, 0), torch.cat(kv_slots, 0)

    # ---------------------------------------------------------------- decoder (adapter off)

    def decode_embedding(self, ids, slots):
        """Embedding-slot decoder: placeholder inputs take the slots in order. -> logits [T, V]."""
        x = self.embed(ids)
        x = x.masked_scatter((ids == self.placeholder)[:, None], slots)
        with self.model.disable_adapter():
            logits = self.model(inputs_embeds=x[None]).logits[0]
        return logits[:, : self.V]

    @contextmanager
    def _inject_kv(self, ids, kv_slots):
        pos = (ids == self.placeholder).nonzero()[:, 0]
        assert pos.numel() == kv_slots.shape[0], "placeholder count != slot count"
        handles = []
        for li, layer in enumerate(self.layers):
            for which, proj in ((0, layer.self_attn.k_proj), (1, layer.self_attn.v_proj)):
                def hook(_m, _inp, out, li=li, which=which):
                    out = out.clone()
                    out[0, pos] = kv_slots[:, li, which].reshape(pos.numel(), -1)
                    return out
                handles.append(proj.register_forward_hook(hook))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def decode_kv(self, ids, kv_slots):
        """KV-slot decoder, whole sequence at once. -> logits [T, V]; rows at placeholder
        positions are meaningless (their residual stream starts from zeros)."""
        x = self.embed(ids).masked_fill((ids == self.placeholder)[:, None], 0.0)
        with self.model.disable_adapter(), self._inject_kv(ids, kv_slots):
            logits = self.model(inputs_embeds=x[None]).logits[0]
        return logits[:, : self.V]

    def decode_kv_cached(self, ids, kv_slots):
        """Second, independent KV decoder for a sequence that *starts* with its placeholders:
        rotate the slot keys ourselves into a DynamicCache, then run the rest after it.
        -> logits [T - n_slots, V] for positions n_slots..T-1."""
        m = kv_slots.shape[0]
        assert bool((ids[:m] == self.placeholder).all()) and not bool((ids[m:] == self.placeholder).any())
        base = self.model.get_base_model()
        rope_fn = importlib.import_module(type(base).__module__).apply_rotary_pos_emb
        positions = torch.arange(m)[None]
        keys = kv_slots[:, :, 0].permute(1, 2, 0, 3)[:, None]     # [layers, 1, Hkv, m, D]
        values = kv_slots[:, :, 1].permute(1, 2, 0, 3)[:, None]
        cos, sin = base.model.rotary_emb(values[0], positions)
        cache = transformers.DynamicCache(config=base.config)
        for li in range(self.n_layers):
            _, k_rot = rope_fn(keys[li], keys[li], cos, sin)
            cache.update(k_rot, values[li], li)
        rest = ids[m:]
        with self.model.disable_adapter():
            logits = self.model(inputs_embeds=self.embed(rest)[None], past_key_values=cache,
                                position_ids=torch.arange(m, ids.numel())[None], use_cache=True).logits[0]
        return logits[:, : self.V]

    # ---------------------------------------------------------------- helpers

    def greedy(self, n_slots, step_logits_fn):
        ids = torch.tensor([self.placeholder] * n_slots + [self.meta["ae_token_id"]])
        picked, rows = [], []
        for _ in range(GREEDY_STEPS):
            last = step_logits_fn(ids)[-1]
            rows.append(last)
            nxt = int(last.argmax())
            picked.append(nxt)
            ids = torch.cat([ids, torch.tensor([nxt])])
        return torch.stack(rows), torch.tensor(picked, dtype=torch.int64)


def loss_of(logits, ids, labels, placeholder):
    """Mean CE of logits[:-1] against labels[1:], ignoring -100."""
    target = labels[1:]
    # Logits at a placeholder position predict the next label; in the KV decoder those logits
    # are not meaningful, so they must never be scored.
    scored_from = (ids[:-1] == placeholder) & (target != -100)
    assert not bool(scored_from.any()), "a label follows a placeholder position"
    return F.cross_entropy(logits[:-1], target.long(), ignore_index=-100)


def rel_err(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max())


def loss_and_grads(icae, golden, kind, decode):
    """Recompute slots from context_ids with gradients on, decode, backward."""
    icae.zero_grad()
    ids = golden[f"{kind}_prompt_answer_ids"][0].long()
    labels = golden[f"{kind}_labels"][0].long()
    emb_slots, kv_slots = icae.encode(golden["context_ids"][0].long())
    loss = loss_of(decode(ids, emb_slots, kv_slots), ids, labels, icae.placeholder)
    loss.backward()
    return (loss.detach().reshape(1), icae.mem_embed.grad.clone(), icae.q_lora_A0.grad.clone())


def check_embedding(icae, golden, name):
    """Reproduce the embedding-slot goldens; returns True when all are within tolerance."""
    ok = True

    def report(what, err, tol):
        nonlocal ok
        good = err <= tol
        ok &= good
        print(f"  [{name}] {what:34s} {err:.3e} {'ok' if good else 'FAIL'}")

    with torch.no_grad():
        s0, _ = icae.encode(golden["context_ids"][0].long())
        s1, _ = icae.encode(golden["context1_ids"][0].long())
        report("memory_slots", rel_err(s0, golden["memory_slots"]), TENSOR_TOL)
        report("memory_slots1", rel_err(s1, golden["memory_slots1"]), TENSOR_TOL)
        steps, greedy = icae.greedy(s0.shape[0], lambda ids: icae.decode_embedding(ids, s0))
        report("ae_step_logits", rel_err(steps, golden["ae_step_logits"]), TENSOR_TOL)
        same = torch.equal(greedy, golden["ae_greedy_ids"].long())
        ok &= same
        print(f"  [{name}] {'ae_greedy_ids':34s} {'identical' if same else 'DIFFER'}")
    for kind in ("ae", "lm", "ft"):
        loss, g_mem, g_q = loss_and_grads(icae, golden, kind,
                                          lambda ids, emb, kv: icae.decode_embedding(ids, emb))
        report(f"{kind}_loss ({loss.item():.6f})", rel_err(loss, golden[f"{kind}_loss"]), LOSS_TOL)
        report(f"{kind}_grad_memory_token_embed", rel_err(g_mem, golden[f"{kind}_grad_memory_token_embed"]), TENSOR_TOL)
        report(f"{kind}_grad_layer0_q_lora_A", rel_err(g_q, golden[f"{kind}_grad_layer0_q_lora_A"]), TENSOR_TOL)
    return ok


def make_kv_golden(icae, golden, name):
    out = {}
    with torch.no_grad():
        _, kv0 = icae.encode(golden["context_ids"][0].long())
        _, kv1 = icae.encode(golden["context1_ids"][0].long())
        out["kv_slots"], out["kv_slots1"] = kv0, kv1
        out["ae_step_logits"], out["ae_greedy_ids"] = icae.greedy(
            kv0.shape[0], lambda ids: icae.decode_kv(ids, kv0))
    for kind in ("ae", "lm", "ft"):
        loss, g_mem, g_q = loss_and_grads(icae, golden, kind,
                                          lambda ids, emb, kv: icae.decode_kv(ids, kv))
        out[f"{kind}_loss"] = loss
        out[f"{kind}_grad_memory_token_embed"] = g_mem
        out[f"{kind}_grad_layer0_q_lora_A"] = g_q
        print(f"  [{name}] KV {kind}_loss = {loss.item():.7f}")

    # Cross-check the hook decoder against a pre-filled cache on the AE sequence.
    with torch.no_grad():
        ids = golden["ae_prompt_answer_ids"][0].long()
        labels = golden["ae_labels"][0].long()
        m = kv0.shape[0]
        cached = F.cross_entropy(icae.decode_kv_cached(ids, kv0)[:-1], labels[m + 1:], ignore_index=-100)
        hooked = out["ae_loss"]
        err = rel_err(cached, hooked)
        print(f"  [{name}] cross-check AE loss: hooks {hooked.item():.7f}  cache {cached.item():.7f}  rel {err:.2e}")
        assert err <= LOSS_TOL, "KV decoder cross-check failed"
        # The greedy step logits must agree as well (first step: nothing but slots before AE).
        step0 = icae.decode_kv_cached(ids[: m + 1], kv0)[-1]
        err0 = rel_err(step0, out["ae_step_logits"][0])
        print(f"  [{name}] cross-check AE step-0 logits rel {err0:.2e}")
        assert err0 <= TENSOR_TOL, "KV decoder cross-check (step logits) failed"

    return {k: (v if v.dtype == torch.int64 else v.float()).detach().contiguous() for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--golden-dir", default=os.path.join(REPO_ROOT, "..", "shared", "testdata", "golden"))
    ap.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "tests", "data", "golden-kv"))
    ap.add_argument("--check-embedding", action="store_true",
                    help="only reproduce the embedding-slot goldens; exit 1 if they do not match")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    models = {}
    ok = True
    for name in MODELS:
        folder = os.path.join(args.golden_dir, name)
        icae = Icae(folder)
        golden = load_file(os.path.join(folder, "golden.safetensors"))
        print(f"{name}: embedding-slot validation")
        ok &= check_embedding(icae, golden, name)
        models[name] = (icae, golden)
    if not ok:
        print("FAIL: the harness does not reproduce the embedding-slot goldens")
        return 1
    if args.check_embedding:
        print("PASS")
        return 0

    os.makedirs(args.out_dir, exist_ok=True)
    for name, (icae, golden) in models.items():
        print(f"{name}: KV slots")
        tensors = make_kv_golden(icae, golden, name)
        meta = {"source": f"../shared/testdata/golden/{name}", "generator": "tests/reference/kv_slots_golden.py",
                "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                "date": datetime.date.today().isoformat()}
        path = os.path.join(args.out_dir, f"{name}.safetensors")
        save_file(tensors, path, metadata=meta)
        os.chmod(path, 0o644)  # save_file creates 0600; these are committed test data
        print(f"  wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
