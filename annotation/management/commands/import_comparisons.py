"""manage.py import_comparisons FILE --project SLUG|ID: load comparisons from JSONL, all or nothing."""

from annotation.management.shared import ImportCommand
from annotation.services.imports import comparisons_import


class Command(ImportCommand):
    help = (
        "Import comparisons from a JSONL file (one object per line: prompt or messages, "
        "response_a, response_b, optional metadata / priority / gold). Every bad line is "
        "reported with its number and reason; nothing is written unless the whole file is valid."
    )

    service = comparisons_import

    def done(self, *, project, report, **options):
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {report.imported} comparisons into {project.slug} "
                f"({report.assignments} assignments, overlap {project.overlap}; "
                f"{len(report.duplicates)} duplicates skipped)."
            )
        )
