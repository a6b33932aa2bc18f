"""Parquet from batches of typed rows, with pyarrow's ParquetWriter, one row group at a time.

Memory: each fetched batch becomes an Arrow record batch at once (compact columns, not Python
objects); a row group's worth is written and dropped. Determinism: every writer option that
shapes the bytes is fixed here, and pyarrow writes no time stamp (its `created_by` names the
pyarrow version only), so the same rows give the same file with the same pyarrow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from annotation.exporters.sink import ByteSink

# Rows per row group: small enough that a row group of TRL pairs (long texts) keeps an export
# under its peak-RSS target (bench/export.py; see bench/README.md), large enough for good
# compression and fast scans.
ROW_GROUP_ROWS = 32_768
# Raw votes with texts repeat a prompt and two responses on every vote: smaller row groups keep
# their peak RSS under the same target (bench/export.py --quick: 320 MB at 32,768, 290 at 8,192).
TEXT_ROW_GROUP_ROWS = 8_192
WRITER_OPTIONS = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "version": "2.6",
    "data_page_version": "1.0",
    "store_schema": True,
}


def parquet_chunks(
    batches: Iterable[list[tuple]],
    *,
    schema: pa.Schema,
    to_columns: Callable[[list[tuple]], list[list]],
    row_group_rows: int = ROW_GROUP_ROWS,
) -> Iterator[tuple[bytes, int]]:
    """(bytes, rows) per batch; `to_columns` turns a batch of rows into one list per schema field."""
    sink = ByteSink()
    writer = pq.ParquetWriter(sink, schema, **WRITER_OPTIONS)
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def flush(final: bool) -> None:
        nonlocal pending, pending_rows
        if not pending_rows:
            return
        table = pa.Table.from_batches(pending, schema=schema)
        offset = 0
        while pending_rows - offset >= row_group_rows or (final and offset < pending_rows):
            size = min(row_group_rows, pending_rows - offset)
            writer.write_table(table.slice(offset, size), row_group_size=row_group_rows)
            offset += size
        rest = table.slice(offset)
        pending = rest.combine_chunks().to_batches() if rest.num_rows else []
        pending_rows = rest.num_rows
        del table, rest
        # Hand the written row group's buffers back to the system: Arrow's allocator keeps freed
        # memory for reuse otherwise, and peak RSS creeps up row group after row group.
        pa.default_memory_pool().release_unused()

    try:
        for rows in batches:
            if rows:
                columns = to_columns(rows)
                arrays = [pa.array(col, type=field.type) for col, field in zip(columns, schema, strict=True)]
                pending.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
                pending_rows += len(rows)
                if pending_rows >= row_group_rows:
                    flush(final=False)
            yield sink.drain(), len(rows)
        flush(final=True)
    finally:
        writer.close()
    yield sink.drain(), 0
