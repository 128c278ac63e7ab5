"""icae's exceptions: one class per kind of failure of the C++ engine (icae::ErrorKind), with the
engine's message. All are icae.Error; each also derives from the built-in exception a Python user
would catch for that kind, so ``except ValueError`` and ``except OSError`` work as expected."""


class Error(Exception):
    """A failure reported by icae."""


class Usage(Error, ValueError):
    """Bad arguments or options (the CLI's exit code 2)."""


class BadInput(Error, ValueError):
    """A malformed file or value: JSON, safetensors, GGUF, tokenizer.json, data (exit code 3)."""


class Io(Error, OSError):
    """A file cannot be opened, read or written (exit code 4)."""


class Mismatch(Error, ValueError):
    """Well-formed but incompatible: a wrong shape, an adapter or slots of another model (exit code 5)."""


class Unsupported(Error, NotImplementedError):
    """A valid feature this build does not implement (exit code 6)."""


class Internal(Error, RuntimeError):
    """A bug or an unexpected state (exit code 1)."""
