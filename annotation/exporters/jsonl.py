"""JSON Lines, plain or gzipped, from batches of ready JSON Lines bytes (kinds.KindSpec.to_lines)."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator

from annotation.exporters.sink import ByteSink

# Fixed gzip settings so the same rows give the same bytes: no file name or time in the header.
GZIP_LEVEL = 6


def jsonl_chunks(
    blobs: Iterable[tuple[bytes, int]], *, compress: bool = False
) -> Iterator[tuple[bytes, int]]:
    """(bytes, rows) per batch of ready JSON Lines bytes; with compress, a gzip stream whose
    header has mtime 0 and no file name."""
    if not compress:
        yield from blobs
        return
    sink = ByteSink()
    with gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=GZIP_LEVEL, mtime=0) as gz:
        for data, rows in blobs:
            if data:
                gz.write(data)
            yield sink.drain(), rows
    yield sink.drain(), 0
