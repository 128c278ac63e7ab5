"""icae: the In-context Autoencoder (Ge et al., ICLR 2024) — a C++ engine with torch tensors in
and out.

    import icae
    m = icae.load("SmolLM2-135M-Instruct.Q4_1.gguf", adapter="models/demo/adapter.safetensors")
    slots = m.compress(open("doc.txt").read())   # icae.Slots; slots.tensor is a torch.Tensor
    print(m.reconstruct(slots))                   # the context back from its slots
    print(m.answer(slots, "Who wrote it?"))        # with a fine-tuned adapter
    slots.save("doc.slots.safetensors"); icae.Slots.load("doc.slots.safetensors")
    icae.pretrain(model=..., train=[...], out="runs/a", k=32, max_context=128, steps=1000)
    icae.eval_ae(m, data="held-out/")

Errors raise icae.Error subclasses (icae.BadInput, icae.Mismatch, ...). See the README's Python
section and examples/python/.
"""
import torch  # noqa: F401  (loads libtorch before the extension that links it)

from . import _C
from ._errors import BadInput, Error, Internal, Io, Mismatch, Unsupported, Usage
from ._model import Completion, Model, Row, Slots, Tokenizer, load
from ._train import check_golden, cli, finetune, help, pretrain

__version__ = _C.__version__


def eval_ae(model: Model, data, **options) -> dict:
    """icae eval ae on a loaded model: see Model.eval_ae."""
    return model.eval_ae(data, **options)


__all__ = [
    "load", "Model", "Slots", "Row", "Completion", "Tokenizer",
    "pretrain", "finetune", "eval_ae", "check_golden", "cli", "help",
    "Error", "Usage", "BadInput", "Io", "Mismatch", "Unsupported", "Internal",
    "__version__",
]
