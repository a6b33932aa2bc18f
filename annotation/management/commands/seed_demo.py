"""manage.py seed_demo: the demo project, its pairs and one login per role (idempotent)."""

import os

from django.core.management.base import BaseCommand, CommandError

from annotation.services.demo import DEFAULT_PASSWORD, demo_seed
from core.errors import ServiceError

ROLE_LABELS = {"staff": "staff, superuser"}
START_PAGES = {"rater": "/", "researcher": "/exports/", "ops": "/ops/", "staff": "/admin/"}


class Command(BaseCommand):
    help = (
        "Create the demo project 'Demo: helpful and harmless' with its pairs and the users "
        "rater1-3, researcher1 and ops1 (and the superuser admin with --with-admin or "
        "DEMO_ADMIN=1). Running it again changes nothing. The password comes from --password, else "
        "$DEMO_PASSWORD, else a fixed demo default; it must pass the password validators."
    )

    def add_arguments(self, parser):
        parser.add_argument("--password", default=None, help="Password for every demo user.")
        parser.add_argument(
            "--with-admin",
            action="store_true",
            default=os.environ.get("DEMO_ADMIN", "").lower() in {"1", "true", "yes", "on"},
            help="Also create the superuser 'admin' with the demo password (default: $DEMO_ADMIN, off).",
        )

    def handle(self, *args, password: str | None, with_admin: bool, **options):
        password = password or os.environ.get("DEMO_PASSWORD") or DEFAULT_PASSWORD
        try:
            result = demo_seed(password=password, with_admin=with_admin)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        project = result.project
        verb = "Created" if result.project_created else "Found"
        self.stdout.write(f"{verb} project {project.name!r} (slug {project.slug}, id {project.pk}).")
        self.stdout.write(f"Added {result.comparisons_created} comparisons.")
        self.stdout.write(
            f"Added {result.prompts_created} pool prompts for RLHF rounds and "
            f"{result.preferences_created} imported gold votes (for the first reward model)."
        )
        created = [login.username for login in result.logins if login.created]
        self.stdout.write(f"Created users: {', '.join(created) if created else 'none (all existed)'}.")

        rows = [("username", "role", "password", "start at")] + [
            (x.username, ROLE_LABELS.get(x.role, x.role), x.password, START_PAGES.get(x.role, "/"))
            for x in result.logins
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
        self.stdout.write("")
        self.stdout.write(line)
        for i, row in enumerate(rows):
            self.stdout.write(
                "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"
            )
            if i == 0:
                self.stdout.write(line)
        self.stdout.write(line)
        self.stdout.write(
            self.style.WARNING("These are demo accounts with a shared password: do not seed a public server.")
        )
