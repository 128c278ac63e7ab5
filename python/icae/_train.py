"""Training and the command line from Python. icae.pretrain / icae.finetune run the CLI's own
commands in this process, so they take exactly `icae pretrain --help`'s options, with its
defaults and checks: a keyword is the flag's long name with "_" for "-" (max_context ->
--max-context, k -> -k), True is a flag, a list repeats the option, None leaves it out."""
from __future__ import annotations

import os
from typing import Callable, List, Optional

from . import _C
from ._progress import Progress


def _flag(name: str) -> str:
    return ("-" if len(name) == 1 else "--") + name.replace("_", "-")


def cli_args(command: List[str], options: dict) -> List[str]:
    """The command line for a command and keyword options (see the module's doc)."""
    args = list(command)
    for name, value in options.items():
        if value is None or value is False:
            continue
        if value is True:
            args.append(_flag(name))
        elif isinstance(value, (list, tuple)):
            for v in value:
                args += [_flag(name), os.fspath(v) if isinstance(v, os.PathLike) else str(v)]
        else:
            args += [_flag(name), os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return args


def cli(*args: str) -> int:
    """Runs an icae command line in this process, e.g. icae.cli("eval", "ae", "--model", ...).
    Errors raise icae's exceptions; returns the exit code (0) otherwise."""
    code, _ = _C.run_cli([os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args], None)
    return code


def _train(mode: str, on_record: Optional[Callable[[dict], Optional[bool]]], progress: bool, options: dict) -> str:
    bar: List[Optional[Progress]] = [None]
    asked_to_stop = [False]

    def observe(record: dict):
        if record.get("record") == "step":
            if bar[0] is None:
                bar[0] = Progress(record["steps"], mode, progress)
                bar[0].update_to(record["step"] - 1)
            bar[0].update_to(record["step"], loss=record.get("loss"), lr=record.get("lr"),
                             tok_s=record.get("tokens_per_s"))
        elif record.get("record") == "eval" and bar[0] is not None:
            shown = {k: v for k, v in record.items() if k.startswith("eval_") and isinstance(v, float)}
            bar[0].write(f"eval @{record.get('step')}: " + " ".join(f"{k[5:]} {v:.4g}" for k, v in shown.items()))
        if on_record is not None and on_record(record) is False:
            asked_to_stop[0] = True
            return False
        return True

    try:
        code, stopped = _C.run_cli(cli_args([mode], options), observe)
    finally:
        if bar[0] is not None:
            bar[0].close()
    out = options.get("out") or options.get("resume")
    if stopped and not asked_to_stop[0]:
        # Ctrl-C (or SIGTERM) reached the trainer: it finished the update and saved.
        raise KeyboardInterrupt(f"{mode} stopped by a signal; the run is saved: continue with "
                                f"icae.{mode}(resume={os.fspath(out)!r})")
    if code != 0:
        from ._errors import Error
        raise Error(f"{mode} ended with exit code {code} (see the messages above; the last good checkpoint is kept)")
    return os.fspath(out)


def pretrain(*, on_record: Optional[Callable[[dict], Optional[bool]]] = None, progress: bool = True, **options) -> str:
    """Pretrains an ICAE adapter (icae pretrain): same options, same run folder. Returns it.

    Example: icae.pretrain(model="m.gguf", train=["corpus/"], eval=["heldout/"], out="runs/a",
    k=32, max_context=128, steps=1000). resume="runs/a" continues a run (steps=N extends it).
    on_record(record) sees every update's metrics ("record": "step") and every evaluation's
    ("record": "eval"); returning False stops the run after saving. progress shows a bar (tqdm
    if installed). Ctrl-C saves the run and raises KeyboardInterrupt.
    The full list of options: print(icae.help("pretrain")).
    """
    return _train("pretrain", on_record, progress, options)


def finetune(*, on_record: Optional[Callable[[dict], Optional[bool]]] = None, progress: bool = True, **options) -> str:
    """Fine-tunes an ICAE adapter on (context, prompt, answer) data (icae finetune); as pretrain.
    The full list of options: print(icae.help("finetune"))."""
    return _train("finetune", on_record, progress, options)


def help(command: str = "") -> str:  # noqa: A001 - the CLI's word
    """The CLI's --help text of a command (e.g. "pretrain"), which lists every option."""
    return _C.cli_help(command)


def check_golden(folder, *, slot_kind: Optional[str] = None, kv_golden: Optional[str] = None,
                 device: Optional[str] = None, dtype: Optional[str] = None) -> dict:
    """icae check-golden: icae against the reference tensors of the original stack in a golden
    folder (../shared/testdata/golden/tiny-llama). Returns {"ok": bool, "items": [{"name",
    "error", "tolerance", "ok", "detail"}]}. Key/value slots: slot_kind="kv", kv_golden=FILE."""
    return _C.check_golden(os.fspath(folder), slot_kind or "", os.fspath(kv_golden) if kv_golden else "",
                           device or "", dtype or "")


# The CLI's help text makes the docstrings' option lists: one source.
try:
    pretrain.__doc__ += "\n\n" + _C.cli_help("pretrain")
    finetune.__doc__ += "\n\n" + _C.cli_help("finetune")
except Exception:  # pragma: no cover - help is a convenience
    pass
