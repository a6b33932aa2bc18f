"""manage.py import_prompts FILE --project SLUG|ID [--purpose round|eval]: add prompts to a
project, all or nothing: to the round prompt pool (default) or as held-out evaluation prompts."""

from annotation.management.shared import ImportCommand
from annotation.services.prompt_imports import IMPORT_PURPOSES, prompts_import


class Command(ImportCommand):
    help = (
        "Import prompts for RLHF rounds from a JSONL file (one object per line: prompt or messages, "
        "optional metadata and reference_answer). Every bad line is reported with its number and "
        "reason; nothing is written unless the whole file is valid. Prompts already in the project "
        "(same content hash) are skipped. --purpose eval imports held-out evaluation prompts, "
        "which rounds never sample."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--purpose",
            choices=[str(p) for p in IMPORT_PURPOSES],
            default="round",
            help="round: the pool rounds sample from (default); eval: held-out evaluation prompts.",
        )

    def run_import(self, *, project, lines, file, purpose="round", **options):
        return prompts_import(project=project, lines=lines, purpose=purpose, on_progress=self.progress)

    def done(self, *, project, report, purpose="round", **options):
        what = "held-out evaluation prompts" if purpose == "eval" else "round prompt pool"
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {report.imported} prompts into {project.slug}, {what} "
                f"({len(report.duplicates)} duplicate(s) skipped)."
            )
        )
