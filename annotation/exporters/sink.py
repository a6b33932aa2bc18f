"""A write-only byte buffer that encoders write into and the caller drains after each batch.

gzip.GzipFile and pyarrow's ParquetWriter both want a file to write to; draining this one after
every batch turns them into generators of byte chunks, so one encoder serves a file on disk, an
HTTP stream and a hash at once, holding at most one batch (or one Parquet row group) in memory.
"""

import io


class ByteSink(io.RawIOBase):
    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        # Writers close their file when they finish; the bytes written so far stay drainable.
        pass

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out
