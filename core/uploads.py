"""Uploads over `UPLOAD_MAX_BYTES` are refused while they stream, never stored whole.

Django caps a request's form fields (DATA_UPLOAD_MAX_MEMORY_SIZE) but not its files. This
handler, first in FILE_UPLOAD_HANDLERS, counts each file's bytes as they arrive: past the limit
the file is skipped (Django reads and discards the rest, nothing is kept in memory or on disk)
and `request.upload_too_large` names it, so the view answers 413 with a clear message.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile


def upload_limit_text() -> str:
    return f"{settings.UPLOAD_MAX_BYTES / 1024**2:.0f} MB"


class SizeLimitedUploadHandler(FileUploadHandler):
    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > settings.UPLOAD_MAX_BYTES:
            self.request.upload_too_large = self.file_name
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler stores the file
