"""Progress for long calls: a tqdm bar (tqdm.auto: the terminal or Jupyter) when tqdm is installed,
plain lines on stderr otherwise."""
import sys
import time

try:
    from tqdm.auto import tqdm as _tqdm
except ImportError:  # tqdm is optional
    _tqdm = None


class Progress:
    def __init__(self, total, desc, enabled=True):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.done = 0
        self._bar = None
        self._last_line = 0.0
        if enabled and _tqdm is not None:
            self._bar = _tqdm(total=total, desc=desc, unit="step" if desc.startswith(("pretrain", "finetune")) else "it",
                              dynamic_ncols=True)

    def update_to(self, done, **postfix):
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(max(0, done - self._bar.n))
            if postfix:
                self._bar.set_postfix({k: _short(v) for k, v in postfix.items()}, refresh=False)
        else:
            now = time.monotonic()
            # A line every 10 s and at the end: readable in a log, not a flood.
            if now - self._last_line >= 10 or done >= (self.total or 0):
                extra = " ".join(f"{k} {_short(v)}" for k, v in postfix.items())
                print(f"{self.desc}: {done}/{self.total} {extra}".rstrip(), file=sys.stderr, flush=True)
                self._last_line = now
        self.done = done

    def write(self, line):
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _short(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return v
