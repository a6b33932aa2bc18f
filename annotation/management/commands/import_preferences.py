"""manage.py import_preferences FILE --project P --format hh|trl [--queue]: all or nothing."""

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from annotation.services.preference_imports import (
    FORMATS,
    PreferenceImportInvalid,
    preferences_import,
    read_lines,
)

MAX_ERRORS_SHOWN = 100


class Command(BaseCommand):
    help = (
        "Import preferences from a JSONL file (.gz accepted): Anthropic HH-RLHF lines "
        '({"chosen", "rejected"} transcripts) or TRL lines ({"prompt", "chosen", "rejected"}, '
        "strings or message lists). Each line becomes a comparison plus one imported vote "
        "(chosen = response A, strength 2). Bad lines are reported with their numbers and nothing "
        "is written unless the whole file is valid; lines already imported are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path to a .jsonl or .jsonl.gz file.")
        parser.add_argument("--project", required=True, help="Project slug (or id).")
        parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
        parser.add_argument(
            "--queue",
            action="store_true",
            help="Also put each comparison in the rating queue for the project's k raters.",
        )

    def handle(self, *args, file: str, project: str, fmt: str, queue: bool, **options):
        target = Project.objects.filter(slug=project).first()
        if target is None and project.isdigit():
            target = Project.objects.filter(pk=int(project)).first()
        if target is None:
            raise CommandError(f"No project with slug or id {project!r}.")
        try:
            lines = list(read_lines(file))
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}.") from None
        try:
            report = preferences_import(project=target, lines=lines, fmt=fmt, queue=queue, source_name=file)
        except PreferenceImportInvalid as exc:
            for error in exc.errors[:MAX_ERRORS_SHOWN]:
                self.stderr.write(str(error))
            if len(exc.errors) > MAX_ERRORS_SHOWN:
                self.stderr.write(f"... and {len(exc.errors) - MAX_ERRORS_SHOWN} more")
            raise CommandError(f"{exc.message} ({target.slug})") from None
        for line, why in report.duplicates[:MAX_ERRORS_SHOWN]:
            self.stdout.write(f"line {line}: skipped, {why}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {report.created} preferences into {target.slug} from {report.lines} lines "
                f"({len(report.duplicates)} duplicates skipped; "
                f"{'queued for raters' if queue else 'not queued for raters'})."
            )
        )
