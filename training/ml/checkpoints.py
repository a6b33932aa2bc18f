"""Atomic model folders and their content hashes (DESIGN.md rule 7). No Django."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output_dir(final_dir: Path) -> Iterator[Path]:
    """Yield a fresh sibling temp folder; on success fsync it and rename it to `final_dir`.

    On any exception (KeyboardInterrupt and TrainingCancelled included) the temp folder is
    removed and the exception re-raised; `final_dir` is untouched. Raises FileExistsError
    if `final_dir` already exists (a checkpoint folder is written once).
    """
    raise NotImplementedError
    yield final_dir


def dir_sha256(path: Path) -> str:
    """sha256 over sorted (relative path, file contents) of every file below `path`."""
    raise NotImplementedError
