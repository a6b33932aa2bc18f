"""Reads: querysets and aggregates for views, the API and exports."""

import hashlib
import hmac
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import timedelta
from itertools import islice

import psycopg
import psycopg.rows
import psycopg.sql
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from psycopg.types.json import set_json_loads

from annotation.exporters.filters import ExportFilters
from annotation.exporters.kinds import json_loads
from annotation.exporters.sql import (
    export_raw_count_sql,
    export_rows_expected,
    export_sources_sql,
    export_sql,
    export_stats_sql,
)
from annotation.models import (
    Assignment,
    Comparison,
    Export,
    Preference,
    Project,
    ProjectMember,
    Prompt,
    Skip,
)
from core import roles
from core.permissions import role_perms


@dataclass(frozen=True)
class Progress:
    rated_today: int  # this rater's votes today
    team_rated_today: int  # votes cast by raters today (no imported or judge votes)
    remaining: int  # the project's comparisons still short of their votes
    total: int  # the project's comparisons
    left_for_you: int  # comparisons still short of votes that this rater may still get


def _start_of_today():
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def progress_for(*, rater, project: Project) -> Progress:
    """The counters of the rater page, in three queries.

    `left_for_you` counts the pairs still short of votes that this rater has neither voted on
    nor skipped: the pair they hold, the ones the queue can still give them, and those other
    raters hold now (their leases may lapse). It is what the rater's own work changes, where
    `remaining` is the project's."""
    human = Preference.Source.RATER
    votes = Preference.objects.filter(comparison__project=project, created_at__gte=_start_of_today())
    today = votes.aggregate(mine=Count("id", filter=Q(rater=rater)), team=Count("id", filter=Q(source=human)))
    comparisons = Comparison.objects.filter(project=project)
    short = Q(votes_count__lt=F("votes_needed"))
    counts = comparisons.aggregate(total=Count("id"), remaining=Count("id", filter=short))
    left = (
        comparisons.filter(short)
        .exclude(Exists(Preference.objects.filter(rater=rater, comparison=OuterRef("pk"))))
        .exclude(Exists(Skip.objects.filter(rater=rater, comparison=OuterRef("pk"))))
        .count()
    )
    return Progress(
        rated_today=today["mine"],
        team_rated_today=today["team"],
        remaining=counts["remaining"],
        total=counts["total"],
        left_for_you=left,
    )


def progress_cached(*, rater, project: Project) -> Progress:
    """`progress_for`, at most PROGRESS_CACHE_SECONDS old, per project and rater: what the
    progress API answers (its COUNTs run over the whole project; a client polling it, or many
    at once, would otherwise repeat them for every request). Pages call `progress_for`."""
    ttl = settings.PROGRESS_CACHE_SECONDS
    if ttl <= 0:
        return progress_for(rater=rater, project=project)
    key = f"progress:{project.pk}:{rater.pk}"
    hit = cache.get(key)
    if hit is not None:
        return Progress(**hit)
    progress = progress_for(rater=rater, project=project)
    cache.set(key, asdict(progress), ttl)
    return progress


def preference_revisable(*, rater, project: Project) -> Preference | None:
    """The rater's last vote in the project if it can still be changed (preference_revise)."""
    since = timezone.now() - timedelta(seconds=settings.PREFERENCE_REVISE_SECONDS)
    return (
        Preference.objects.filter(
            rater=rater, comparison__project=project, source=Preference.Source.RATER, created_at__gt=since
        )
        .order_by("-created_at", "-id")
        .first()
    )


def preference_of(*, rater, preference_id: int) -> Preference | None:
    """One of the rater's own votes, with its pair, prompt and responses."""
    return (
        Preference.objects.select_related(
            "comparison__prompt", "comparison__response_a", "comparison__response_b"
        )
        .filter(pk=preference_id, rater=rater)
        .first()
    )


def sees_all_projects(user) -> bool:
    """Ops and (active) superusers see every project; raters and researchers only the projects
    they are members of (ProjectMember)."""
    return roles.OPERATE in role_perms(user)


def projects_for(*, user):
    """The projects `user` may see: all for ops and superusers, their own for everyone else."""
    projects = Project.objects.order_by("name")
    if user is None or not user.is_authenticated:
        return projects.none()
    if sees_all_projects(user):
        return projects
    return projects.filter(members__user=user)


def project_visible(*, user, project_id: int) -> bool:
    return projects_for(user=user).filter(pk=project_id).exists()


def comparison_visible(*, user, comparison_id: int) -> bool:
    return Comparison.objects.filter(pk=comparison_id, project__in=projects_for(user=user)).exists()


def project_members(*, project: Project):
    """A project's members with their roles' groups, by username."""
    return (
        ProjectMember.objects.filter(project=project)
        .select_related("user", "added_by")
        .prefetch_related("user__groups")
        .order_by("user__username")
    )


def project_by_ref(ref: str) -> Project | None:
    """The project with this slug, else (when `ref` is a number) with this id; None if neither.

    The one look-up behind every management command's `--project`."""
    project = Project.objects.filter(slug=ref).first()
    if project is None and ref.isdigit():
        project = Project.objects.filter(pk=int(ref)).first()
    return project


def project_slugs(*, limit: int = 20) -> list[str]:
    return list(Project.objects.order_by("slug").values_list("slug", flat=True)[:limit])


def prompt_pool_counts(*, project: Project) -> dict:
    """{"pool_size": round prompts (what rounds sample), "eval_size": held-out evaluation prompts}."""
    counts = dict(
        Prompt.objects.filter(project=project, purpose__in=[Prompt.Purpose.ROUND, Prompt.Purpose.EVAL])
        .values_list("purpose")
        .annotate(n=Count("pk"))
        .values_list("purpose", "n")
    )
    return {"pool_size": counts.get(Prompt.Purpose.ROUND, 0), "eval_size": counts.get(Prompt.Purpose.EVAL, 0)}


def preferences_of(*, rater, project_id: int | None = None):
    """The rater's own votes (the API never lists anyone else's), in the projects they may still
    see: a former member no longer reads a project's votes, their own included."""
    votes = Preference.objects.filter(rater=rater, comparison__project__in=projects_for(user=rater))
    if project_id is not None:
        votes = votes.filter(comparison__project_id=project_id)
    return votes


def _count_per_project(queryset, project_field: str = "project"):
    """A correlated COUNT(*) subquery of `queryset` rows belonging to the outer project."""
    rows = queryset.filter(**{project_field: OuterRef("pk")}).order_by().values(project_field)
    return Coalesce(Subquery(rows.annotate(n=Count("*")).values("n"), output_field=IntegerField()), 0)


def projects_with_counts():
    """Projects with their queue counts for the ops overview (one query, no N+1)."""
    return Project.objects.order_by("name").annotate(
        comparisons_total=_count_per_project(Comparison.objects.all()),
        comparisons_done=_count_per_project(Comparison.objects.filter(votes_count__gte=F("votes_needed"))),
        votes_total=_count_per_project(Preference.objects.all(), "comparison__project"),
        assignments_leased=_count_per_project(
            Assignment.objects.filter(state=Assignment.State.LEASED, expires_at__gt=timezone.now())
        ),
    )


# --- Exports ------------------------------------------------------------------------------
# Export reads are raw SQL on their own read-only REPEATABLE READ connection, for three reasons:
# the count, the dataset card's numbers and the rows all come from one snapshot (the card
# matches the file even while raters keep voting); the rows stream in chunks in constant
# memory; and the caller's Django connection stays free to record progress
# in autocommit, where the page can see it.


def export_rater_pseudonym(*, secret: str, rater_id: int) -> str:
    """A rater id in exports: HMAC-SHA256 with the project's secret, stable, not reversible without it."""
    digest = hmac.new(secret.encode(), f"rater:{rater_id}".encode(), hashlib.sha256).hexdigest()
    return digest[:16]


def _exports_seen_by(user):
    exports = Export.objects.select_related("project", "created_by")
    return exports if sees_all_projects(user) else exports.filter(project__in=projects_for(user=user))


def exports_for(*, user, project: Project | None = None, limit: int = 50):
    """The newest exports of the projects `user` may see (of `project` only, if given)."""
    qs = _exports_seen_by(user).order_by("-created_at", "-id")
    if project is not None:
        qs = qs.filter(project=project)
    return qs[:limit]


def export_get(*, user, export_id: int) -> Export | None:
    """The export, if it belongs to a project `user` may see."""
    return _exports_seen_by(user).filter(pk=export_id).first()


def export_identical_to(*, export: Export, sha256: str) -> Export | None:
    """The first earlier finished export of the same project, kind and format with these exact
    bytes (the same spec over the same data), if any."""
    return (
        Export.objects.filter(
            project_id=export.project_id,
            kind=export.kind,
            format=export.format,
            sha256=sha256,
            status=Export.Status.SUCCEEDED,
            pk__lt=export.pk,
        )  # fmt: skip
        .order_by("pk")
        .first()
    )


EXPORT_WORK_MEM = "64MB"


class ExportSnapshotReader:
    """Count, card numbers and rows of an export from one database snapshot, streamed.

    Opens its own connection (read-only, REPEATABLE READ, time zone UTC) and reads typed rows
    (binary) in batches of `batch_size`: memory stays flat whatever the export's size. A thread
    fetches the next batch while the caller encodes the last one, so PostgreSQL and the encoder
    work at the same time.

    The card's numbers: for raw votes the caller counts them from the rows it writes
    (`annotation.exporters.stats.RawVoteStats`) and `count()` gives the row count; for the other
    kinds one aggregate query (`stats_future`) runs on a second connection that imports the same
    snapshot (pg_export_snapshot), in a thread, while the rows stream.
    """

    def __init__(self, *, project: Project, kind: str, filters: ExportFilters, batch_size: int = 5000):
        self.project_id = project.pk
        self.secret = project.export_secret
        self.kind = kind
        self.filters = filters
        self.batch_size = batch_size
        self.conn: psycopg.Connection | None = None
        self.snapshot_id = ""
        self._params: dict = {}
        self._stats: Future | None = None
        self._fetchers: list[_FetchAhead] = []
        self._futures: list[Future] = []

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(**self._params, autocommit=False)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        set_json_loads(json_loads, conn)  # annotation.exporters.kinds: msgspec, same values
        return conn

    def __enter__(self) -> "ExportSnapshotReader":
        params = connection.get_connection_params()
        keep = {
            k: v for k, v in params.items() if k not in {"cursor_factory", "context", "prepare_threshold"}
        }
        # UTC: timestamps in the files do not depend on the server's zone. work_mem: the sort by
        # (comparison, vote) of a big export fits in memory instead of spilling to disk.
        # jit off: compiling the plan's expressions costs each parallel process time on big
        # exports and gains nothing on these simple columns (bench/README.md).
        keep["options"] = (
            keep.get("options", "") + f" -c TimeZone=UTC -c work_mem={EXPORT_WORK_MEM} -c jit=off"
        ).strip()
        self._params = keep
        self.conn = self._connect()
        self.snapshot_id = self.conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for ahead in self._fetchers:  # a stream closed early: no thread left on the connection
            ahead.stop()
        self._fetchers.clear()
        for future in self._futures:
            try:
                future.result()
            except Exception:  # already reported to whoever asked for the result
                pass
        self._futures.clear()
        self._stats = None
        if self.conn is not None:
            try:
                self.conn.rollback()
            finally:
                self.conn.close()
                self.conn = None

    def _stats_query(self, conn: psycopg.Connection) -> dict:
        sql, params = export_stats_sql(filters=self.filters, project_id=self.project_id)
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
        row["rows"] = export_rows_expected(kind=self.kind, stats=row)
        return row

    def _in_snapshot(self, query: Callable[[psycopg.Connection], object]):
        """`query` run on a second connection that imports this reader's snapshot."""
        conn = self._connect()
        try:
            conn.execute(
                psycopg.sql.SQL("SET TRANSACTION SNAPSHOT {}").format(psycopg.sql.Literal(self.snapshot_id))
            )
            return query(conn)
        finally:
            conn.rollback()
            conn.close()

    def _beside(self, query: Callable[[psycopg.Connection], object]) -> Future:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-snapshot")
        future = pool.submit(self._in_snapshot, query)
        pool.shutdown(wait=False)
        self._futures.append(future)
        return future

    def stats(self) -> dict:
        """The card's numbers (and `rows`, the row count), started in the background on first call
        of `stats_future` or computed here."""
        return self.stats_future().result()

    def stats_future(self) -> Future:
        if self._stats is None:
            self._stats = self._beside(self._stats_query)
        return self._stats

    def _count_query(self, conn: psycopg.Connection) -> int:
        sql, params = export_raw_count_sql(filters=self.filters, project_id=self.project_id)
        return int(conn.execute(sql, params).fetchone()[0])

    def count(self) -> int:
        """The export's row count in this snapshot. Raw votes: a plain count (no aggregate pass
        without comparison-level filters); other kinds: from the card's numbers."""
        if self.kind != "raw":
            return self.stats()["rows"]
        return self._count_query(self.conn)

    def count_future(self) -> Future:
        """`count()` on a second connection in the same snapshot, running while the rows stream."""
        if self.kind != "raw":
            return self.stats_future()
        return self._beside(self._count_query)

    def sources(self) -> list[dict]:
        """Where the export's imported comparisons came from (format, file, licence, source); on
        the reader's connection, so call it when no rows are streaming."""
        sql, params = export_sources_sql(filters=self.filters, project_id=self.project_id)
        with self.conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def _raters(self) -> tuple[list[int], list[str]]:
        user_table = get_user_model()._meta.db_table
        with self.conn.cursor() as cur:
            cur.execute(f'SELECT id FROM "{user_table}" ORDER BY id')
            ids = [r[0] for r in cur.fetchall()]
        return ids, [export_rater_pseudonym(secret=self.secret, rater_id=i) for i in ids]

    def _sql(self) -> tuple[str, dict]:
        raters = self._raters() if self.kind == "raw" else None
        return export_sql(kind=self.kind, filters=self.filters, project_id=self.project_id, raters=raters)

    def batches(self) -> Iterator[list[tuple]]:
        """Typed rows in batches, one batch fetched ahead while the caller encodes the last.

        The query runs as one ordinary statement whose rows libpq hands over in chunks
        (`stream` with a size: libpq's chunked-rows mode), not through a server-side cursor:
        PostgreSQL plans a cursor for one backend, whereas a plain query may use parallel
        workers for the scan, joins and sort, as COPY does.
        """
        sql, params = self._sql()
        with self.conn.cursor(binary=True) as cur:
            rows = cur.stream(sql, params, size=self.batch_size)
            # Closing the stream early makes psycopg cancel the query and drain it; until then
            # it holds the connection's lock, so `close()` stops the fetching thread and closes
            # the stream before it rolls back.
            ahead = _FetchAhead(lambda: list(islice(rows, self.batch_size)), close=rows.close)
            self._fetchers.append(ahead)
            yield from ahead


class _FetchAhead:
    """Iterate `fetch()` results until an empty one, fetching the next in a thread meanwhile.

    psycopg waits for the server without holding the GIL, so PostgreSQL produces batch n+1 while
    the caller encodes batch n. At most one batch waits in the queue (memory stays bounded).
    `stop()` (also run when the iteration ends, early or not) ends the thread, then calls `close`.
    """

    def __init__(self, fetch: Callable[[], list], *, close: Callable[[], None]):
        self._fetch = fetch
        self._close: Callable[[], None] | None = close
        self._ready: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="export-fetch", daemon=True)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                rows = self._fetch()
                self._put(rows)
                if not rows:
                    return
        except BaseException as exc:  # handed to the caller's thread
            self._put(exc)

    def __iter__(self) -> Iterator[list]:
        self._thread.start()
        try:
            while True:
                item = self._ready.get()
                if isinstance(item, BaseException):
                    raise item
                if not item:
                    return
                yield item
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        close, self._close = self._close, None
        if close is not None:
            close()


def shown_left_for(*, project: Project, rater, comparison_id: int) -> str | None:
    """Which stored response ("a"/"b") this rater's slot showed on the left, if they have one.

    Read from the server's record of the lease, never from the client, so the displayed side
    maps back to the stored side even if the page was stale.
    """
    return (
        Assignment.objects.filter(project=project, comparison_id=comparison_id, rater=rater)
        .values_list("left", flat=True)
        .first()
    )


def comparison_in_project(*, project: Project, comparison_id: int) -> bool:
    return Comparison.objects.filter(pk=comparison_id, project=project).exists()
