"""manage.py export_preferences --project P --kind trl|hh|raw|comparisons --format jsonl|jsonl.gz|parquet
[filters] [--out DIR]: a snapshot export with a console progress bar. Filters that match no vote
are refused with a message (no file is written)."""

from pathlib import Path

from django.core.management.base import CommandError
from tqdm import tqdm

from annotation.exporters import FORMATS, KINDS
from annotation.exporters.filters import TRISTATE, VOTERS, WEIGHTS
from annotation.management.shared import ProjectCommand, service_errors, user_from_option
from annotation.models import Export
from annotation.services.exports import export_copy_to, export_create, export_folder, export_run

# The options that are export filters under the same name (plus --no-texts, the `texts` filter).
FILTER_OPTIONS = (
    "rounds", "since", "until", "min_votes", "min_agreement", "min_trust", "gold", "unsafe", "voters", "test_fraction",
    "seed", "weights",
)  # fmt: skip


def export_filters(options: dict) -> dict:
    """The export's filters from the command's options (checked by the service)."""
    return {**{k: options[k] for k in FILTER_OPTIONS}, "texts": not options["no_texts"]}


class Command(ProjectCommand):
    help = (
        "Export a project's preferences as a versioned snapshot (data file + README.md dataset card) "
        "under EXPORTS_DIR, recorded with its filters, row count and sha256; with --out, also copy both "
        "files into that folder. The same filters over the same data give the same bytes."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--kind", required=True, choices=KINDS)
        parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
        parser.add_argument("--out", help="Folder to copy the data file and README.md into.")
        parser.add_argument("--rounds", help="Round ids, comma separated.")
        parser.add_argument("--since", help="Votes cast from this ISO date (its start) / date-time (UTC).")
        parser.add_argument(
            "--until", help="Votes cast up to this ISO date (its whole day) / before this date-time (UTC)."
        )
        parser.add_argument("--min-votes", type=int, default=1)
        parser.add_argument("--min-agreement", type=float, default=0.0)
        parser.add_argument("--gold", choices=TRISTATE, default="exclude")
        parser.add_argument("--unsafe", choices=TRISTATE, default="include")
        parser.add_argument("--voters", choices=VOTERS, default="all", help="Whose votes (default all).")
        parser.add_argument(
            "--no-texts",
            action="store_true",
            help="Raw / comparisons rows: ids only, no prompt or responses.",
        )
        parser.add_argument(
            "--test-fraction", type=float, default=0.0,
            help="Share of prompts in a prompt-disjoint test split (a `split` column); 0: none.",
        )  # fmt: skip
        parser.add_argument("--seed", type=int, default=0, help="Seed of the split.")
        parser.add_argument(
            "--min-trust", type=float, default=0.0, help="People's votes from raters with this trust or more."
        )
        parser.add_argument(
            "--weights", choices=WEIGHTS, default="none",
            help="trust: raw and TRL rows get a weight column (a vote: its rater's trust).",
        )  # fmt: skip
        parser.add_argument("--user", help="Username to record as the export's author.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle_project(self, target, *, kind: str, fmt: str, out: str | None, **options):
        with service_errors():
            export = export_create(
                project=target,
                kind=kind,
                fmt=fmt,
                filters=export_filters(options),
                user=user_from_option(options["user"]),
                delivery=Export.Delivery.COMMAND,
            )

        bar = tqdm(
            total=None,
            unit="rows",
            desc=f"export {export.pk}",
            file=self.stderr._out,
            disable=options["no_progress"],
        )

        def progress(done: int, expected: int) -> None:
            if bar.total != expected:
                bar.total = expected
                bar.refresh()
            bar.update(done - bar.n)

        try:
            export = export_run(export_id=export.pk, on_progress=progress)
        finally:
            bar.close()
        if export.status != Export.Status.SUCCEEDED:
            raise CommandError(f"Export {export.pk} {export.status}: {export.error}")
        self.stdout.write(
            f"export {export.pk}: {export.row_count} rows, {export.bytes} bytes, sha256 {export.sha256}\n"
            f"snapshot: {export_folder(export)}"
        )
        if out:
            data, card = export_copy_to(export=export, folder=Path(out))
            self.stdout.write(f"copied to: {data} and {card}")
