"""manage.py import_prompts FILE --project SLUG|ID: add prompts to a project's pool, all or nothing."""

from annotation.management.shared import ImportCommand
from annotation.services.prompt_imports import prompts_import


class Command(ImportCommand):
    help = (
        "Import prompts for RLHF rounds from a JSONL file (one object per line: prompt or messages, "
        "optional metadata and reference_answer). Every bad line is reported with its number and "
        "reason; nothing is written unless the whole file is valid. Prompts already in the project "
        "(same content hash) are skipped."
    )

    service = prompts_import

    def done(self, *, project, report, **options):
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {report.imported} prompts into {project.slug} "
                f"({len(report.duplicates)} duplicate(s) skipped)."
            )
        )
