"""Exporters: one module per file format (jsonl, parquet), each turning batches of rows into bytes.

`kinds` says what each kind of export holds (columns, Parquet schema, row shaping), `sql` how the
rows are read, `card` writes the dataset card. Nothing here touches Django models: the service
(annotation.services.exports) wires a snapshot reader, an encoder and the snapshot row together.
"""

KINDS = ("trl", "hh", "raw", "comparisons")
FORMATS = ("jsonl", "jsonl.gz", "parquet")

CONTENT_TYPES = {
    "jsonl": "application/jsonl",
    "jsonl.gz": "application/gzip",
    "parquet": "application/vnd.apache.parquet",
}


def data_file_name(kind: str, fmt: str) -> str:
    return f"{kind}.{fmt}"
