"""What the management commands share: the `--project` look-up and the import commands' shape."""

from __future__ import annotations

import sys
from contextlib import nullcontext

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from annotation.selectors import project_by_ref, project_slugs
from annotation.services.jsonl import ImportReport, import_lines, open_jsonl
from core.errors import ServiceError


def project_from_option(ref: str) -> Project:
    """The project a `--project` slug or id names, else a CommandError that lists the slugs."""
    project = project_by_ref(ref)
    if project is None:
        known = ", ".join(project_slugs()) or "none yet"
        raise CommandError(f"No project with slug or id {ref!r}. Known slugs: {known}.")
    return project


class ImportCommand(BaseCommand):
    """FILE --project P: one import service over the file's lines, every bad line reported on
    stderr, and nothing written unless the whole file is valid (the services see to that).

    A subclass names its service (`service(project=, lines=, on_progress=)` returning an
    `ImportReport`, or overrides `run_import`) and says what it did (`done`)."""

    file_help = "Path to a .jsonl file (.gz accepted), or - for standard input."
    max_errors_shown: int | None = None  # None: every bad line

    def add_arguments(self, parser):
        parser.add_argument("file", help=self.file_help)
        parser.add_argument("--project", required=True, help="Project slug (or id).")

    def open_lines(self, file: str):
        """The file's lines (gunzipped when gzip; standard input for "-"), as a context manager,
        read as a stream within the import limits (annotation.services.jsonl.bounded_lines)."""
        return nullcontext(import_lines(sys.stdin.buffer)) if file == "-" else open_jsonl(file)

    def progress(self, lines: int) -> None:
        self.stderr.write(f"  checked {lines:,} lines…")

    service = None

    def run_import(self, *, project: Project, lines, file: str, **options) -> ImportReport:
        return type(self).service(project=project, lines=lines, on_progress=self.progress)

    def done(self, *, project: Project, report: ImportReport, **options) -> None:
        raise NotImplementedError

    def handle(self, *args, file: str, project: str, **options):
        target = project_from_option(project)
        try:
            with self.open_lines(file) as lines:  # reading errors become ServiceErrors (jsonl)
                report = self.run_import(project=target, lines=lines, file=file, **options)
        except OSError as exc:  # the file cannot be opened
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}.") from None
        except ServiceError as exc:  # too large, unreadable gzip: nothing was written
            raise CommandError(exc.message) from None
        if not report.ok:
            shown = report.errors[: self.max_errors_shown]
            for error in shown:
                self.stderr.write(str(error))
            if len(report.errors) > len(shown):
                self.stderr.write(f"... and {len(report.errors) - len(shown)} more")
            raise CommandError(
                f"{len(report.errors)} bad line(s) of {report.lines}; nothing was imported into {target.slug}."
            )
        self.done(project=target, report=report, **options)
