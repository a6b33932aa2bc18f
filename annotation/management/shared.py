"""What the management commands share: the `--project` look-up (`ProjectCommand`), `--user`,
a service's refusal as a command error, and the import commands' shape."""

from __future__ import annotations

import sys
from contextlib import contextmanager, nullcontext

from django.contrib.auth import get_user_model
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


def user_from_option(username: str | None):
    """The user a `--user` option names (None when it is not given), else a CommandError."""
    if not username:
        return None
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"No user {username!r}.")
    return user


@contextmanager
def service_errors():
    """A service's refusal (`ServiceError`) ends the command with its message, no traceback."""
    try:
        yield
    except ServiceError as exc:
        raise CommandError(exc.message) from None


class ProjectCommand(BaseCommand):
    """A command about one project: `--project SLUG|ID` is looked up (a CommandError lists the
    known slugs when there is none) and `handle_project` gets the Project."""

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project slug (or id).")

    def handle(self, *args, project: str, **options):
        return self.handle_project(project_from_option(project), **options)

    def handle_project(self, project: Project, **options):
        raise NotImplementedError


class ImportCommand(ProjectCommand):
    """FILE --project P: one import service over the file's lines, every bad line reported on
    stderr, and nothing written unless the whole file is valid (the services see to that).

    A subclass names its service (`service(project=, lines=, on_progress=)` returning an
    `ImportReport`, or overrides `run_import`) and says what it did (`done`)."""

    file_help = "Path to a .jsonl file (.gz accepted), or - for standard input."
    max_errors_shown: int | None = None  # None: every bad line

    def add_arguments(self, parser):
        parser.add_argument("file", help=self.file_help)
        super().add_arguments(parser)

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

    def handle_project(self, target: Project, *, file: str, **options):
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
