"""manage.py import_prompts FILE --project SLUG|ID: add prompts to a project's pool, all or nothing."""

import sys

from django.core.management.base import BaseCommand, CommandError

from annotation.management.commands.import_comparisons import project_lookup
from annotation.services.prompt_imports import prompts_import


class Command(BaseCommand):
    help = (
        "Import prompts for RLHF rounds from a JSONL file (one object per line: prompt or messages, "
        "optional metadata and reference_answer). Every bad line is reported with its number and "
        "reason; nothing is written unless the whole file is valid. Prompts already in the project "
        "(same content hash) are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path to a .jsonl file, or - for standard input.")
        parser.add_argument("--project", required=True, help="Project slug (or id).")

    def handle(self, *args, file: str, project: str, **options):
        target = project_lookup(project)
        try:
            stream = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from None
        with stream:
            report = prompts_import(
                project=target,
                lines=stream,
                on_progress=lambda n: self.stderr.write(f"  checked {n:,} lines…"),
            )
        if not report.ok:
            for error in report.errors:
                self.stderr.write(str(error))
            raise CommandError(
                f"{len(report.errors)} bad line(s) of {report.lines}; nothing was imported into {target.slug}."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {report.imported} prompts into {target.slug} "
                f"({len(report.duplicates)} duplicate(s) skipped)."
            )
        )
