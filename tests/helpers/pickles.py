"""Pickled payloads an attacker ships: unpickling one creates ``marker`` (standing for any code).

``PAYLOADS`` maps a style to its class and the global a reader must name when it refuses it:
``open`` (``io.open``, a global torch does not allow) and ``shell`` (``os.system``, a global of a
module torch blocks). ``Call`` pickles as any callable applied to any arguments, to build chains.
"""

from __future__ import annotations

import os


class OpenPayload:
    """Unpickling creates ``marker`` through ``io.open``."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class ShellPayload(OpenPayload):
    """Unpickling runs a shell command that creates ``marker``."""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


PAYLOADS = {"open": (OpenPayload, "io.open"), "shell": (ShellPayload, f"{os.system.__module__}.system")}


class Call:
    """Pickles as ``func(*args)``; ``func`` and the arguments may be ``Call``s themselves (what a
    crafted file can say with the REDUCE opcode alone)."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __call__(self):  # pickle asks that a reduce function be callable; only its pickled form matters
        raise NotImplementedError

    def __reduce__(self):
        return (self.func, self.args)
