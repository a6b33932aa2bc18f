"""Pause Python's cyclic garbage collector while a bulk reader allocates millions of short-lived rows.

Why: an export holds a batch of rows (tuples, a prompt's decoded messages) while it encodes them,
so every row survives a young-generation collection and is promoted; the collector then walks
those rows again and again, and the full collections it triggers walk every live object of the
process (Django, the models, the ORM's caches). Measured on the raw-votes export of
bench/export.py (980,000 rows, 2 cores): reading the rows cost 7.1 s of CPU with the collector on
and 3.6 s with it paused; reading and encoding them, 8.5 s and 4.6 s. The rows hold no reference
cycles (msgspec structs are made with gc=False; tuples of scalars, lists and dicts of strings), so
reference counting frees every one of them with the collector paused; nothing is leaked.

`gc.disable()` is process-wide, so pauses nest and overlap by count: the collector runs again when
the last pause ends, and only if it was enabled when the first began. A pause never outlives its
`with` block, whatever is raised in it.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
