"""manage.py import_comparisons FILE --project SLUG|ID: load comparisons from JSONL, all or nothing."""

import sys

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from annotation.services.imports import comparisons_import


def project_lookup(ref: str) -> Project:
    project = Project.objects.filter(slug=ref).first()
    if project is None and ref.isdigit():
        project = Project.objects.filter(pk=int(ref)).first()
    if project is None:
        known = ", ".join(Project.objects.order_by("slug").values_list("slug", flat=True)[:20]) or "none yet"
        raise CommandError(f"No project with slug or id {ref!r}. Known slugs: {known}.")
    return project


class Command(BaseCommand):
    help = (
        "Import comparisons from a JSONL file (one object per line: prompt or messages, "
        "response_a, response_b, optional metadata / priority / gold). Every bad line is "
        "reported with its number and reason; nothing is written unless the whole file is valid."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path to a .jsonl file, or - for standard input.")
        parser.add_argument("--project", required=True, help="Project slug (or id).")

    def handle(self, *args, file: str, project: str, **options):
        target = project_lookup(project)

        def progress(lines: int) -> None:
            self.stderr.write(f"  checked {lines:,} lines…")

        try:
            stream = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from None
        with stream:
            report = comparisons_import(project=target, lines=stream, on_progress=progress)

        if not report.ok:
            for error in report.errors:
                self.stderr.write(str(error))
            raise CommandError(
                f"{len(report.errors)} bad line(s) of {report.lines}; "
                f"nothing was imported into {target.slug}."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {report.imported} comparisons into {target.slug} "
                f"({report.slots} rating slots, overlap {target.overlap})."
            )
        )
