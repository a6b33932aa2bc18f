"""manage.py import_preferences FILE --project P --format hh|trl [--queue]: all or nothing."""

from annotation.management.shared import ImportCommand
from annotation.services.jsonl import ImportReport
from annotation.services.preference_imports import (
    DATASET_FORMATS,
    PreferenceImportInvalid,
    preferences_import,
)


class Command(ImportCommand):
    help = (
        "Import preferences from a JSONL file (.gz accepted): Anthropic HH-RLHF lines "
        '({"chosen", "rejected"} transcripts) or TRL lines ({"prompt", "chosen", "rejected"}, '
        "strings or message lists). Each line becomes a comparison plus one imported vote "
        "(chosen = response A, strength 2). Bad lines are reported with their numbers and nothing "
        "is written unless the whole file is valid; lines already imported are skipped."
    )
    file_help = "Path to a .jsonl or .jsonl.gz file."
    max_errors_shown = 100

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--format", required=True, choices=DATASET_FORMATS, dest="fmt")
        parser.add_argument(
            "--queue",
            action="store_true",
            help="Also put each comparison in the rating queue for the project's k raters.",
        )

    def run_import(self, *, project, lines, file, fmt, queue, **options):
        try:
            return preferences_import(project=project, lines=lines, fmt=fmt, queue=queue, source_name=file)
        except PreferenceImportInvalid as exc:
            return ImportReport(lines=exc.lines, errors=exc.errors)

    def done(self, *, project, report, queue, **options):
        for line, why in report.duplicates[: self.max_errors_shown]:
            self.stdout.write(f"line {line}: skipped, {why}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {report.imported} preferences into {project.slug} from {report.lines} lines "
                f"({len(report.duplicates)} duplicates skipped; "
                f"{'queued for raters' if queue else 'not queued for raters'})."
            )
        )
