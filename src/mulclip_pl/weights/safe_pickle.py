"""Reading pickles without running code hidden in them.

Weights and checkpoints are torch files, read with ``weights_only=True``: torch refuses to build
any object outside its allowlist, in one of several wordings (and, for some, with advice to set
``weights_only=False``). ``refusing_pickles`` recognises each of them and raises one line that
names our opt-in flag and the safer safetensors route instead.

Data files (CIFAR's python batches) need no opt-in: they hold numpy arrays, bytes, str, numbers,
lists and dicts, and ``load_plain_data`` builds nothing else; any other object is refused unbuilt.
"""

from __future__ import annotations

import pickle
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mulclip_pl.errors import UnsafePickleError

try:
    from numpy._core import multiarray, numeric
except ImportError:  # numpy < 2
    from numpy.core import multiarray, numeric

TRUST_FLAGS = "--model.trust_pickle true (mulclip-pl export / explain: --trust_pickle true)"
# How to turn a trusted pickled file into one that cannot run code, per kind of file.
EXPORT_HINT = ("mulclip-pl export --ckpt {path} --trust_pickle true --format safetensors --out weights.safetensors, "
               "then start from it with --model.pretrained weights.safetensors")
SAFETENSORS_HINT = "safetensors.torch.save_file(its state dict, 'weights.safetensors'), then --model.pretrained weights.safetensors"

# Each wording torch's weights-only reader (torch 2.0 ... 2.x) uses for an object it will not build.
_UNSAFE_WORDINGS = (
    r"GLOBAL (\S+) was not an allowed global",  # any importable name outside the allowlist
    r"unsupported GLOBAL (\S+) whose module \S+ is blocked",  # os, posix, nt, sys: never allowed
    r"Unsupported class (\S+)",  # torch < 2.4
    r"instantiate unsupported class (.+?)$",  # torch < 2.4, NEWOBJ
    r"reduce for unrecognized function (.+?)(?: which belongs to .*)?$",
    r"allowlisted via `add_safe_globals`,? but got (.+?)$",  # NEWOBJ / BUILD of a class it did not allow
)
# Opcodes the weights-only reader does not parse, so cannot check (torch reports only their number):
# FRAME starts every pickle of protocol 4+ (``torch.save(..., pickle_protocol=4)``); the rest import names.
_UNCHECKED_OPCODES = {149: "pickle protocol 4 or higher", 147: "opcode STACK_GLOBAL", 146: "opcode NEWOBJ_EX",
                      130: "opcode EXT1", 131: "opcode EXT2", 132: "opcode EXT4"}


def unsafe_object(message: str) -> str | None:
    """What a torch weights-only read error says the file holds beyond tensors ("a pickled io.open
    object"), or None when the error is about something else (a corrupt or foreign file)."""
    for wording in _UNSAFE_WORDINGS:
        found = re.search(wording, message, re.MULTILINE)
        if found:
            name = re.sub(r"^<(?:class|built-in function) '?([^'>]+)'?>$", r"\1", found.group(1).strip())
            return f"a pickled {name} object"
    operand = re.search(r"Unsupported operand (\d+)", message)
    if operand and int(operand.group(1)) in _UNCHECKED_OPCODES:
        return f"pickled objects that torch's weights-only reader cannot check ({_UNCHECKED_OPCODES[int(operand.group(1))]})"
    return None


@contextmanager
def refusing_pickles(path: str | Path | None, hint: str = EXPORT_HINT):
    """Turn torch's ``weights_only`` refusal of a pickled object, in any of its wordings, into an
    ``UnsafePickleError`` that names the opt-in flag and the safer conversion, instead of torch's
    advice to set ``weights_only=False``. Other read errors pass through unchanged."""
    try:
        yield
    except pickle.UnpicklingError as exc:
        what = unsafe_object(str(exc))
        if what is None:
            raise
        raise UnsafePickleError(
            f"refused to load {path}: it holds {what}, and unpickling can run code hidden in the file. "
            f"If you trust where the file came from, pass {TRUST_FLAGS}. Safer: convert it once, where you "
            f"trust it, to safetensors (cannot run code): {hint.format(path=path)}."
        ) from None


def read_error_gist(exc: Exception) -> str:
    """The gist of a read error on one line, without torch's advice to load with ``weights_only=False``."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        return f"not a torch checkpoint ({detail})"
    return text.splitlines()[0] if text else type(exc).__name__


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """How Python 3 pickles ``bytes`` at protocol 2: ``_codecs.encode(text, 'latin1')``; no other codec."""
    if encoding != "latin1" or not isinstance(text, str):
        raise RefusedGlobal("_codecs.encode", f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# Everything a pickle of numpy arrays, bytes, str, numbers, lists and dicts imports (Python 2 and 3,
# numpy 1 and 2 module names, protocols 0-5).
PLAIN_DATA_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
    **{(builtins, "bytes"): bytes for builtins in ("__builtin__", "builtins")},  # b"" at protocol 2
    **{(f"{core}.multiarray", "_reconstruct"): multiarray._reconstruct for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.multiarray", "scalar"): multiarray.scalar for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.numeric", "_frombuffer"): numeric._frombuffer for core in ("numpy.core", "numpy._core")},
}


class RefusedGlobal(pickle.UnpicklingError):
    """A data pickle imports something other than plain data (``name``); nothing of it was built."""

    def __init__(self, name: str, detail: str | None = None) -> None:
        super().__init__(detail or name)
        self.name = name


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return PLAIN_DATA_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None


def load_plain_data(path: Path) -> Any:
    """Unpickle a data file that may hold numpy arrays, bytes, str, numbers, lists and dicts only
    (Python 2 strings come back as bytes). Anything else raises ``RefusedGlobal`` before it is built."""
    with path.open("rb") as handle:
        return _PlainDataUnpickler(handle, encoding="bytes").load()
