"""Publishing the Postfix tables: the need is recorded with each change, a worker publishes.

request_publication() bumps a generation counter and writes the keys the change touched,
inside the caller's transaction, and queues a task after commit. The task (any number of
times, on any worker) takes this host's publication lock and then:
- when every request since its last publication names its keys: renders those keys only,
  compares them with what the live tables answer, and changes what differs (lmdb: in place,
  a key at a time; hash: on a copy, renamed into place; cdb has no update, so it rebuilds);
- otherwise: renders every table, and rebuilds the ones whose content changed under a
  temporary name, reads them back and renames them into place.
Refusals go live before what they guard and leave after it, so a switched-off address never
falls through to a catch-all, not even for a moment. A failure leaves the previous tables.
"""

import fcntl
import logging
import os
import random
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from mailadmin.redis_store import RedisUnavailable, Store
from postfix import features, postmap
from postfix.models import MapGeneration, MapPublication, PublicationRequest
from postfix.render import render, render_each

logger = logging.getLogger(__name__)

# Tables that refuse: their additions go live first and their removals last.
REFUSALS = ("recipient_access", "sender_access")
# Tables keyed by domain names, never by an address.
DOMAIN_TABLES = ("mailbox_domains", "alias_domains", "transport")
VERIFY_SAMPLE = 16


class PublicationError(Exception):
    """A step of the publication failed; the previous tables stay in force."""


@dataclass
class Outcome:
    status: str  # "published", "unchanged", "nothing to do", "busy", "failed"
    changed: list[str] = field(default_factory=list)
    generation: int = 0
    error: str = ""
    reloaded: bool = False


def queue_name(host: str) -> str:
    return f"maps.{host}"


# --- the request (outbox) -------------------------------------------------------------------


@dataclass
class _Noted:
    keys: set[str] = field(default_factory=set)
    everything: bool = False
    requests: int = 0


# Set by one_request(): the requests made inside it, made as one when it ends.
_noted: ContextVar[_Noted | None] = ContextVar("publication_requests_noted", default=None)


@contextmanager
def one_request(reason: str) -> Iterator[None]:
    """Inside, request_publication() only notes the keys; leaving it normally makes one request
    for all of them (everything when any named none). Enter it inside the transaction holding the
    changes, so the request commits with them or not at all (a CSV import's batch of rows). Keys
    of a change rolled back meanwhile are published too: publishing compares each key with the
    live tables, so an unchanged key changes nothing."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("one_request() belongs inside the transaction holding the changes")
    noted = _Noted()
    token = _noted.set(noted)
    try:
        yield
    finally:
        _noted.reset(token)
    if noted.requests:
        request_publication(reason, None if noted.everything else noted.keys)


def request_publication(reason: str = "", keys: Iterable[str] | None = None) -> None:
    """Call inside the transaction that changed data the tables are made from: the need to
    publish is recorded with the change, and a worker publishes after commit. `keys` are the
    table keys the change touched (addresses); None when it may touch any."""
    noted = _noted.get()
    if noted is not None:
        noted.requests += 1
        noted.everything = noted.everything or keys is None
        noted.keys.update(keys or ())
        return
    bump = {"requested": F("requested") + 1, "requested_at": timezone.now(), "reason": reason[:200]}
    # No savepoint inside the caller's transaction: a failure here fails the change with it.
    with transaction.atomic(savepoint=False):
        if not MapGeneration.objects.filter(pk=1).update(**bump):
            MapGeneration.objects.get_or_create(pk=1)  # the very first change
            MapGeneration.objects.filter(pk=1).update(**bump)
        generation = MapGeneration.objects.values_list("requested", flat=True).get(pk=1)
        named = sorted({key.lower() for key in keys}) if keys is not None else []
        PublicationRequest.objects.create(generation=generation, keys="\n".join(named), everything=keys is None)
    transaction.on_commit(enqueue_publication, robust=True)


def note_directory(fingerprint: str) -> bool:
    """Request a publication when the directory's mailbox addresses (their fingerprint) differ
    from those noted last time; returns whether it did. Cheap when nothing changed: one row."""
    with transaction.atomic():
        row, _ = MapGeneration.objects.select_for_update().get_or_create(pk=1)
        if row.directory_fingerprint == fingerprint:
            return False
        MapGeneration.objects.filter(pk=1).update(directory_fingerprint=fingerprint)
        request_publication("directory mailboxes changed")
    return True


def enqueue_publication() -> None:
    """Queue a publication on every mail host, unless a run queued there has not begun yet: it
    reads the database when it begins, so it publishes this change too. A burst of changes
    queues a run or two per host instead of one each (each run costs the worker a task even
    when it finds nothing left to do). A broker that is down loses nothing: the generation is
    in the database and each worker's reconcile publishes it."""
    for host in settings.MAP_HOSTS:
        if not _mark_queued(host):
            continue
        try:
            current_app.send_task("postfix.tasks.publish_maps", queue=queue_name(host), retry=False)
        except Exception as exc:  # kombu raises several types for an unreachable broker
            logger.warning("map publication for %s not queued (%s); the reconcile will publish it", host, exc)
            _unmark_queued(host)


def queued_mark(host: str) -> str:
    return f"mailadmin:publication-queued:{host}"


def _marks() -> Store:
    return Store(settings.REDIS_URL, settings.COUNTER_TIMEOUT)


def _mark_queued(host: str) -> bool:
    """Whether to queue a run for `host`: no when one queued has not begun. The mark expires
    after MAP_RECONCILE_INTERVAL, so a run lost with its mark (a worker killed before it began)
    holds changes back no longer than the periodic reconcile would."""
    try:
        return _marks().add(queued_mark(host), settings.MAP_RECONCILE_INTERVAL)
    except RedisUnavailable:
        return True  # queue it anyway: a run too many is harmless


def _unmark_queued(host: str) -> None:
    try:
        _marks().delete([queued_mark(host)])
    except RedisUnavailable as exc:
        logger.warning("mark of a queued map publication on %s not removed (%s); it expires by itself", host, exc)


def publish_queued() -> Outcome:
    """A queued run (postfix.tasks.publish_maps): its mark goes before anything is read, so a
    change committed from now on queues another run (this one may read too early to see it)."""
    _unmark_queued(settings.MAIL_HOST)
    return publish()


def requested_generation() -> int:
    row = MapGeneration.objects.filter(pk=1).values_list("requested", flat=True).first()
    return row or 0


def host_state(host: str | None = None) -> MapPublication:
    state, _ = MapPublication.objects.get_or_create(host=host or settings.MAIL_HOST)
    return state


def _pending_keys(state: MapPublication) -> frozenset[str] | None:
    """The keys of every request since this host's last publication; None when some request
    names none, or is gone (pruned while this host was away), or they are too many."""
    requested = requested_generation()
    rows = list(
        PublicationRequest.objects.filter(
            generation__gt=state.published_generation, generation__lte=requested
        ).values_list("everything", "keys")
    )
    if len(rows) != requested - state.published_generation or any(everything for everything, _ in rows):
        return None
    keys = frozenset(key for _, text in rows for key in text.split("\n") if key)
    return keys if len(keys) <= settings.MAP_INCREMENTAL_MAX_KEYS else None


def _prune_requests() -> None:
    """Requests every mail host has published are no longer needed (nor those of a week ago:
    a host that far behind publishes everything)."""
    states = dict(
        MapPublication.objects.filter(host__in=settings.MAP_HOSTS).values_list("host", "published_generation")
    )
    done = min((states.get(host, 0) for host in settings.MAP_HOSTS), default=0)
    old = timezone.now() - timedelta(days=7)
    PublicationRequest.objects.filter(generation__lte=done).delete()
    PublicationRequest.objects.filter(created_at__lt=old).delete()


# --- the lock and leftovers -------------------------------------------------------------------


@contextmanager
def publication_lock() -> Iterator[bool]:
    """This host's map directory, locked across processes (all workers of a host share it;
    other hosts publish their own directories). Yields False when another publication holds it."""
    map_dir = Path(settings.POSTFIX_MAP_DIR)
    lock_path = map_dir.parent / f".{map_dir.name}.publish.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# A temporary source, its database, and the file Berkeley DB builds a hash: table in (left
# over when postmap is killed).
TEMPORARY = re.compile(r"^(__db\.)?\.[\w-]+\.[0-9a-f]{8}\.tmp(\.db|\.lmdb|\.cdb)?\Z")


def sweep_temporaries() -> list[str]:
    """Remove temporaries a killed publication left. Only while holding the lock."""
    map_dir = Path(settings.POSTFIX_MAP_DIR)
    try:
        stale = sorted(entry.name for entry in os.scandir(map_dir) if TEMPORARY.match(entry.name))
    except FileNotFoundError:
        return []
    for name in stale:
        try:
            (map_dir / name).unlink(missing_ok=True)
        except OSError as exc:  # the publication itself will report an unwritable directory
            logger.warning("stale temporary %s not removed: %s", name, exc)
    if stale:
        logger.info("removed %d stale temporary map files: %s", len(stale), ", ".join(stale))
    return stale


# --- when to publish -----------------------------------------------------------------------------


def _due_keys(since: datetime | None, now: datetime) -> set[str]:
    if since is None:
        return set()
    return {key.lower() for feature in features.map_features() for key in feature.due_keys(since, now)}


def _needs_publication(state: MapPublication, now: datetime, full: bool) -> bool:
    if requested_generation() > state.published_generation or state.last_success_at is None or state.last_error:
        return True
    if _due_keys(state.last_success_at, now):
        return True
    return full and now - state.last_success_at >= timedelta(seconds=settings.MAP_FULL_RECONCILE_INTERVAL)


def _wait_for_quiet() -> None:
    """A lone change (none came within the quiet spell before it) is published at once. While
    changes keep coming, wait until none came for the quiet spell, at most MAX_WAIT in all;
    later ones are picked up by the loop in publish()."""
    quiet = timedelta(milliseconds=settings.MAP_PUBLISH_QUIET_MS)
    deadline = time.monotonic() + settings.MAP_PUBLISH_MAX_WAIT_MS / 1000
    while True:
        latest = list(PublicationRequest.objects.order_by("-generation").values_list("created_at", flat=True)[:2])
        if not latest or (len(latest) == 2 and latest[0] - latest[1] >= quiet):
            return
        idle = timezone.now() - latest[0]
        remaining = deadline - time.monotonic()
        if len(latest) == 1 or idle >= quiet or remaining <= 0:
            return
        time.sleep(min((quiet - idle).total_seconds(), remaining))


# --- writing the tables ------------------------------------------------------------------------


def _entries(snapshot: features.Snapshot) -> Iterator[features.Entry | features.Entries]:
    for feature in features.map_features():
        yield from feature.entries(snapshot)


def render_tables(snapshot: features.Snapshot | None = None) -> dict[str, list[str]]:
    """Every table's lines (only the snapshot's keys, when it names some); by default as of
    now, with the directory read afresh."""
    snapshot = snapshot or features.Snapshot(timezone.now(), features.directory_mailboxes())
    return render(_entries(snapshot), settings.POSTFIX_MAPS, snapshot.keys)


def _table(lines: list[str]) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in lines)


# What tables should answer, by table name: the table, and key -> value (None: no answer).
Expected = Mapping[str, tuple[postmap.Table, Mapping[str, str | None]]]


def _read_back(expected: Expected) -> None:
    """Read keys back from tables (one postmap each, side by side): each gives its value, or
    nothing where None is expected."""
    _compare(expected, postmap.query_tables({table: list(keys) for table, keys in expected.values()}))


def _compare(expected: Expected, answers: Mapping[postmap.Table, postmap.Lookup]) -> None:
    for name, (table, keys) in expected.items():
        for key, value in keys.items():
            if (got := answers[table].found.get(key)) != value:
                raise PublicationError(f"verification of {name}: {key} gave {got!r}, expected {value!r}")


def _sample(lines: list[str]) -> list[str]:
    if len(lines) <= 1000:
        return lines
    return [lines[0], lines[-1], *random.sample(lines, VERIFY_SAMPLE)]


def _in_order(changes: dict[str, tuple[dict[str, str], set[str]]]) -> list[tuple[str, dict[str, str], set[str]]]:
    """Refusals added, then the other tables changed, then refusals removed."""
    steps: list[tuple[str, dict[str, str], set[str]]] = []
    steps += [(name, puts, set()) for name, (puts, _) in changes.items() if name in REFUSALS and puts]
    steps += [(name, puts, deletes) for name, (puts, deletes) in changes.items() if name not in REFUSALS]
    steps += [(name, {}, deletes) for name, (_, deletes) in changes.items() if name in REFUSALS and deletes]
    return steps


def _publish_keys(snapshot: features.Snapshot, counts: dict[str, int]) -> list[str]:
    """Render only the snapshot's keys and change only what differs from the live tables."""
    assert snapshot.keys is not None
    rendered = render_tables(snapshot)
    addresses_only = all("@" in key for key in snapshot.keys)
    # A table keyed by domain holds none of these keys (one postmap run less).
    skip = [name for name in DOMAIN_TABLES if addresses_only and not rendered[name]]
    names = [name for name in settings.POSTFIX_MAPS if name not in skip]
    live = postmap.query_tables({postmap.live(name): snapshot.keys for name in names})
    changes: dict[str, tuple[dict[str, str], set[str]]] = {}
    for name in names:
        new = _table(rendered[name])
        old = live[postmap.live(name)].found
        puts = {key: value for key, value in new.items() if old.get(key) != value}
        deletes = old.keys() - new.keys()
        if puts or deletes:
            changes[name] = (puts, set(deletes))
            counts[name] = counts.get(name, 0) + len(new.keys() - old.keys()) - len(deletes)
    for name, puts, deletes in _in_order(changes):
        table = postmap.live(name)
        if table.type == "lmdb":
            postmap.put(table, puts)  # in place: Postfix sees each key change at once
            postmap.delete(table, deletes)
        else:
            copy = postmap.temporary(name)
            try:
                postmap.copy(table, copy)
                postmap.put(copy, puts)
                postmap.delete(copy, deletes)
                _read_back({name: (copy, {**puts, **dict.fromkeys(deletes)})})
                postmap.install(copy, name)
            finally:
                postmap.remove(copy)
    expected = {name: {**puts, **dict.fromkeys(deletes)} for name, (puts, deletes) in changes.items()}
    _read_back({name: (postmap.live(name), keys) for name, keys in expected.items()})
    return list(changes)


def _live_text(name: str) -> str | None:
    """The live table's content as its source says; None when unknown (no table, or changed
    in place since it was built)."""
    table = postmap.live(name)
    try:
        return table.path.read_text() if table.exists() else None
    except FileNotFoundError:
        return None


def _source(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def _publish_all(snapshot: features.Snapshot, counts: dict[str, int]) -> list[str]:
    """Render every table; rebuild those whose content changed (each one's postmap runs while
    the next table renders), read them back, and rename them into place."""
    built: dict[str, postmap.Table] = {}
    unions: dict[str, postmap.Table] = {}
    samples: dict[str, tuple[postmap.Table, Mapping[str, str | None]]] = {}

    def changed() -> Iterator[tuple[postmap.Table, list[str], list[str]]]:
        for name, lines in render_each(_entries(snapshot), settings.POSTFIX_MAPS):
            counts[name] = len(lines)
            old = _live_text(name)
            if old is not None and old == _source(lines):
                continue
            if name in REFUSALS and old is not None:
                # Old and new refusals together first: nothing refused before or after the
                # change goes unrefused while the other tables change.
                both = {**_table(old.splitlines()), **_table(lines)}
                if len(both) > len(lines):
                    unions[name] = postmap.temporary(name)
                    yield unions[name], [f"{key} {value}" for key, value in sorted(both.items())], []
            built[name] = postmap.temporary(name)
            samples[name] = (built[name], _table(_sample(lines)))
            yield built[name], lines, list(samples[name][1])

    try:
        _compare(samples, postmap.build_all(changed()))
        refusals = [name for name in built if name in REFUSALS]
        order = [*unions.items()]
        order += [(name, built[name]) for name in refusals if name not in unions]
        order += [(name, table) for name, table in built.items() if name not in REFUSALS]
        order += [(name, built[name]) for name in unions]
        for name, table in order:
            postmap.install(table, name)
    finally:
        for table in [*built.values(), *unions.values()]:
            postmap.remove(table)
    return list(built)


def live_lines(name: str) -> list[str] | None:
    """The live table as sorted lines (from its source, or read whole), None when there is none."""
    text = _live_text(name)
    if text is not None:
        return text.splitlines()
    table = postmap.live(name)
    if not table.exists():
        return None
    return sorted(f"{key} {value}" for key, value in postmap.dump(table).items())


# --- the publication ------------------------------------------------------------------------------


def _publish_once(state: MapPublication, coalesce: bool, full: bool) -> Outcome:
    if coalesce:
        _wait_for_quiet()
    generation = requested_generation()
    started = timezone.now()
    host = state.host
    MapPublication.objects.filter(host=host).update(last_attempt_at=started)
    counts = dict(state.line_counts)
    keys = None
    if not full and not state.last_error and state.last_success_at and settings.POSTFIX_MAP_TYPE != "cdb":
        if all(postmap.live(name).exists() for name in settings.POSTFIX_MAPS):
            pending = _pending_keys(state)
            keys = None if pending is None else pending | _due_keys(state.last_success_at, started)
    try:
        # The directory is read once per publication (only the people a few keys need).
        snapshot = features.Snapshot(started, features.directory_mailboxes(keys), keys)
        changed = _publish_keys(snapshot, counts) if keys is not None else _publish_all(snapshot, counts)
    except Exception as exc:  # any failure: the previous tables stay, the error is shown
        message = str(exc)[:2000] or type(exc).__name__
        logger.error("map publication on %s failed: %s", host, message)
        MapPublication.objects.filter(host=host).update(last_error=message, last_error_at=timezone.now())
        return Outcome("failed", generation=generation, error=message)
    updates: dict[str, object] = {
        # The render started at `started`: what expires after it is caught by the next run.
        "last_success_at": started,
        "published_generation": generation,
        "last_error": "",
        "line_counts": counts,
    }
    if changed:
        updates["publications"] = F("publications") + 1
        # lmdb changed in place is seen at once; a renamed table is reopened on reload.
        renamed = keys is None or settings.POSTFIX_MAP_TYPE != "lmdb"
        updates["reload_pending"] = renamed or state.reload_pending
    MapPublication.objects.filter(host=host).update(**updates)
    _prune_requests()
    _schedule_next_due()
    mode = "all" if keys is None else f"{len(keys)} keys"
    logger.info("maps on %s at generation %s (%s): %s", host, generation, mode, ", ".join(changed) or "unchanged")
    return Outcome("published" if changed else "unchanged", changed=changed, generation=generation)


def _reload_if_due(host: str) -> bool:
    state = host_state(host)
    now = timezone.now()
    interval = timedelta(seconds=settings.POSTFIX_RELOAD_MIN_INTERVAL)
    if not state.reload_pending or (state.last_reload_at is not None and now - state.last_reload_at < interval):
        return False
    try:
        postmap.reload_postfix()
    except postmap.PostmapError as exc:
        MapPublication.objects.filter(host=host).update(last_error=str(exc), last_error_at=now)
        return False
    MapPublication.objects.filter(host=host).update(last_reload_at=now, reload_pending=False)
    return True


def publish(*, force: bool = False, coalesce: bool = True, full: bool = False) -> Outcome:
    """Publish this host's tables if anything is pending (or always, with force). Safe to call
    from any number of workers at once: one publishes, the others return "busy", and the one
    publishing looks again after releasing the lock so no change is left behind."""
    host = settings.MAIL_HOST
    outcome = Outcome("nothing to do")
    changed: list[str] = []
    reloaded = False
    while True:
        with publication_lock() as locked:
            if not locked:
                return Outcome("busy") if outcome.status == "nothing to do" else outcome
            sweep_temporaries()
            while True:
                state = host_state(host)
                now = timezone.now()
                if not (force or _needs_publication(state, now, full)):
                    break
                # A forced publication, or a due full reconcile, renders everything.
                everything = force or (
                    full
                    and state.last_success_at is not None
                    and now - state.last_success_at >= timedelta(seconds=settings.MAP_FULL_RECONCILE_INTERVAL)
                )
                outcome = _publish_once(state, coalesce, full=everything)
                force = full = False
                changed += outcome.changed
                if outcome.status == "failed":
                    break
            reloaded = _reload_if_due(host) or reloaded
        # A change committed while we held the lock may have found it busy: look once more.
        if outcome.status == "failed" or not _needs_publication(host_state(host), timezone.now(), False):
            break
    outcome.changed, outcome.reloaded = list(dict.fromkeys(changed)), reloaded
    if outcome.status != "failed" and changed:
        outcome.status = "published"
    return outcome


_wakeups_queued: set[datetime] = set()


def _schedule_next_due() -> None:
    """Wake a worker when the passing of time next changes an entry (an alias expiry)."""
    now = timezone.now()
    due = [when for feature in features.map_features() if (when := feature.next_due(now)) is not None]
    if not due or min(due) - now > timedelta(hours=1):
        return  # the periodic reconcile covers far ones (and the broker's ETA window)
    next_due = min(due)
    if next_due in _wakeups_queued:
        return  # one wake-up per moment and process, not one per publication
    _wakeups_queued.add(next_due)
    try:
        current_app.send_task(
            "postfix.tasks.publish_maps", queue=queue_name(settings.MAIL_HOST), eta=next_due, retry=False
        )
    except Exception as exc:
        logger.warning("wake-up at %s not queued (%s); the reconcile will catch it", next_due, exc)
