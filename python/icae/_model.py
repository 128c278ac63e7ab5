"""icae.load and icae.Model: a base model and an ICAE adapter loaded once, compressing contexts
into memory slots and decoding from them. Every option has the name and default of the C++ API
(icae/api.h: OpenOptions, SessionOptions, SamplingOptions) and of the CLI's flags; an option left
as None keeps that default."""
from __future__ import annotations

import os
import queue
import threading
from typing import Iterator, List, Optional, Sequence, Union

import torch

from . import _C

Slots = _C.Slots
Row = _C.Row
Completion = _C.Completion

Slots.__doc__ = """Memory slots and what made them.

    tensor          torch.Tensor, shared with icae (no copy): [n, hidden] embedding slots, or
                    [n, layers, 2, kv_heads, head_dim] key/value slots
    kind            "embedding" or "kv"
    count, len()    number of slots (k per segment of the context)
    mem_size        k of the adapter that made them
    context_tokens  tokens of the context they stand for
    save(path)      a slot file (safetensors); Slots.load(path) reads one back (float32, CPU)

Slots carry the fingerprints of the base model and the adapter: a model refuses slots made by
another (icae.Mismatch)."""

Completion.__doc__ = """One decoded row: ids (the stop id included when hit), text, stop_reason
("stop_id", "max_new_tokens", "callback"), prefix_tokens (the decoder prefix, slots included)."""


def _options(kwargs):
    """The options given (not None), for the C++ side, which owns the defaults."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _paths(p):
    if isinstance(p, (str, os.PathLike)):
        return [os.fspath(p)]
    return [os.fspath(x) for x in p]


class Tokenizer:
    """The model's own tokenizer (tokenizer.json of a Hugging Face folder, or the GGUF's)."""

    def __init__(self, model: "_C.Model"):
        self._c = model

    def encode(self, text: str) -> List[int]:
        """Token ids of text, as icae compresses it (no BOS added)."""
        return self._c.tokenize(text)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids (special tokens skipped)."""
        return self._c.detokenize(list(ids))

    def token_to_id(self, token: str) -> int:
        """The id of a token as spelled in the vocabulary, or -1."""
        return self._c.token_to_id(token)

    def __len__(self) -> int:
        return self._c.tokenizer_vocab_size()


class Model:
    """A base model with an ICAE adapter (or without one: then only generate() works).

    Make one with icae.load(). A Model serves one call at a time (calls from several threads wait
    for each other); long calls release the GIL, and Ctrl-C interrupts them with KeyboardInterrupt.
    Decoding options, per call or as load() defaults: max_new_tokens, temperature (0: greedy),
    top_k, top_p, seed, repetition_penalty, no_repeat_ngram (no_repeat_ngram_size is accepted
    too), stop_ids, use_model_stop_ids, ft_template, system.
    """

    def __init__(self, c_model: "_C.Model"):
        self._c = c_model
        self.tokenizer = Tokenizer(c_model)

    @property
    def info(self) -> dict:
        """What is loaded: architecture, sizes, device, dtype, fingerprints, k, rate, slot kind."""
        return self._c.info()

    def __repr__(self):
        i = self.info
        adapter = f", adapter={i['adapter_path']!r}, slot_kind={i.get('slot_kind')!r}, k={i.get('mem_size')}" \
            if i.get("adapter_path") else ""
        return f"icae.Model({i['model_path']!r}{adapter}, device={i['device']!r}, dtype={i['dtype']!r})"

    # --- the encoder --------------------------------------------------------------------------
    def compress(self, context: Union[str, Sequence[int], Sequence[str], Sequence[Sequence[int]]]):
        """Memory slots of a context: text or token ids. A list of texts (or of id lists) is
        compressed in one batched pass and gives a list of Slots."""
        if isinstance(context, str):
            return self._c.compress_texts([context])[0]
        context = list(context)
        if not context:
            raise _errors().Usage("compress: no context given")
        if all(isinstance(x, str) for x in context):
            return self._c.compress_texts(context)
        if all(isinstance(x, int) for x in context):
            return self._c.compress_ids([context])[0]
        if all(isinstance(x, torch.Tensor) for x in context):
            context = [x.tolist() for x in context]
        return self._c.compress_ids([list(map(int, x)) for x in context])

    def slots(self, tensor: torch.Tensor, context_tokens: int = 0) -> Slots:
        """A tensor from elsewhere (e.g. edited slots) as this adapter's Slots; its shape is checked."""
        return self._c.slots_of(tensor, context_tokens)

    # --- decoder rows -------------------------------------------------------------------------
    def reconstruct_row(self, slots: Slots) -> Row:
        """The decoder prefix [slots, AE]: decoding it gives the context back."""
        return self._c.reconstruct_row(self._as_slots(slots))

    def answer_row(self, slots: Slots, prompt: Union[str, Sequence[int]]) -> Row:
        """The adapter's FT template around [slots, FT, prompt]."""
        slots = self._as_slots(slots)
        if isinstance(prompt, str):
            return self._c.answer_row_text(slots, prompt)
        return self._c.answer_row_ids(slots, list(prompt))

    def generate_row(self, prompt: Union[str, Sequence[int]]) -> Row:
        """The base model alone on a prompt (no slots)."""
        if isinstance(prompt, str):
            return self._c.generate_row_text(prompt)
        return self._c.generate_row_ids(list(prompt))

    # --- the decoder --------------------------------------------------------------------------
    def run(self, rows: Sequence[Row], on_token=None, **decode) -> List[Completion]:
        """Decodes rows together as one batch; row i equals decoding it alone. on_token(row, id)
        streams each id; returning False from it ends that row."""
        return self._c.run(list(rows), _decode_options(decode), on_token)

    def reconstruct(self, slots: Slots, *, stream: bool = False, **decode) -> Union[str, Iterator[str]]:
        """The context back from its slots (greedy unless told otherwise). stream=True yields
        the text piece by piece as it decodes."""
        return self._decode(self.reconstruct_row(slots), stream, decode)

    def answer(self, slots: Slots, prompt: Union[str, Sequence[int]], *, stream: bool = False,
               **decode) -> Union[str, Iterator[str]]:
        """The answer to a prompt about the context the slots stand for."""
        return self._decode(self.answer_row(slots, prompt), stream, decode)

    def generate(self, prompt: Union[str, Sequence[int]], *, stream: bool = False,
                 **decode) -> Union[str, Iterator[str]]:
        """The base model's continuation of a prompt, no slots."""
        return self._decode(self.generate_row(prompt), stream, decode)

    # --- the decoder as tensors (for comparison with other stacks) ----------------------------
    def decoder_embeddings(self, row: Row) -> torch.Tensor:
        """The decoder's input embeddings [T, hidden] for an embedding-slot row: what a Hugging
        Face model takes as inputs_embeds (slots, special tokens and text in place)."""
        return self._c.decoder_embeddings(row)

    def logits(self, row: Row) -> torch.Tensor:
        """The decoder's logits [T, vocab] (float32) over a row's prefix, one forward pass."""
        return self._c.logits(row)

    # --- evaluation ---------------------------------------------------------------------------
    def eval_ae(self, data, *, batch: Optional[int] = None, max_samples: int = 0, progress: bool = True,
                on_batch=None, **decode) -> dict:
        """icae eval ae: reconstruct each held-out text from its slots. data: text files, folders
        of them, JSONL ({"text"}). Returns the CLI's --json numbers: bleu4, corpus_bleu4,
        exact_prefix, token_accuracy, and "samples". on_batch(done, total) sees progress."""
        from ._progress import Progress
        bar = [None]

        def step(done, total):
            if bar[0] is None:
                bar[0] = Progress(total, "eval ae", progress)
            bar[0].update_to(done)
            if on_batch is not None:
                return on_batch(done, total)
            return True

        try:
            return self._c.eval_ae(_paths(data), batch or 0, max_samples, _decode_options(decode), step)
        finally:
            if bar[0] is not None:
                bar[0].close()

    def release_cache(self) -> None:
        """Frees the KV cache kept between calls."""
        self._c.release_cache()

    # ------------------------------------------------------------------------------------------
    def _as_slots(self, slots):
        if isinstance(slots, torch.Tensor):
            return self._c.slots_of(slots, 0)
        return slots

    def _decode(self, row, stream, decode):
        if not stream:
            return self._c.run([row], _decode_options(decode), None)[0].text
        return self._stream(row, _decode_options(decode))

    def _stream(self, row, decode):
        """Decodes in a worker thread and yields text pieces; closing the generator stops it."""
        q: "queue.Queue" = queue.Queue()
        stop = threading.Event()
        done = object()

        def on_token(_row, token):
            q.put(token)
            return not stop.is_set()

        def work():
            try:
                self._c.run([row], decode, on_token)
                q.put(done)
            except BaseException as e:  # carried to the consumer
                q.put(e)

        worker = threading.Thread(target=work, name="icae-decode", daemon=True)
        worker.start()
        ids: List[int] = []
        shown = ""
        try:
            while True:
                item = q.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                ids.append(item)
                text = self._c.detokenize(ids)
                if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the rest
                    continue
                if len(text) > len(shown):
                    yield text[len(shown):]
                shown = text
        finally:
            stop.set()
            worker.join()


def _decode_options(decode):
    decode = _options(decode)
    if "no_repeat_ngram_size" in decode:  # transformers' name
        decode["no_repeat_ngram"] = decode.pop("no_repeat_ngram_size")
    return decode


def _errors():
    from . import _errors as e
    return e


def load(model: Union[str, os.PathLike], adapter: Optional[Union[str, os.PathLike]] = None, *,
         device: Optional[str] = None, dtype: Optional[str] = None, threads: Optional[int] = None,
         dense_decode: Optional[bool] = None, tokenizer: Optional[str] = None, lora_alpha: Optional[float] = None,
         **decode) -> Model:
    """Loads a base model (a Hugging Face folder or a .gguf file) and, optionally, an ICAE adapter
    (.safetensors: icae's own or a released ICAE v2 checkpoint).

    device: "cpu" (default), "cuda", "cuda:N". dtype: "f32" (default), "bf16", "f16", "auto" (bf16
    on CUDA and on CPUs with native bf16). threads: CPU threads (0: libtorch's default).
    dense_decode: decode a .gguf with dense weights. tokenizer: a tokenizer.json instead of the
    model's own. lora_alpha: for released adapters that store none (they used 32). Other keyword
    arguments are decoding defaults (see icae.Model).

    A folder without tokenizer.json loads as weights only: the model then takes and gives token ids.
    """
    options = _options(dict(device=device, dtype=dtype, threads=threads, dense_decode=dense_decode,
                            tokenizer=os.fspath(tokenizer) if tokenizer is not None else None, lora_alpha=lora_alpha))
    options.update(_decode_options(decode))
    c = _C.Model(os.fspath(model), os.fspath(adapter) if adapter is not None else "", options)
    return Model(c)
