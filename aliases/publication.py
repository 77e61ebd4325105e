"""Publishing the Postfix maps: the need is recorded with each change, a worker publishes.

request_publication() bumps a generation counter inside the caller's transaction and queues
a task after commit. The task (any number of times, on any worker) takes this host's
publication lock, waits for a short quiet spell so a burst becomes one publication, renders
every map and replaces only the ones whose content changed: new source and .db under a
temporary name in the map directory, read back (small tables whole with `postmap -s`, the
large one by a `postmap -q` sample), then renamed into place.
Postfix never sees a half-written table, and a failure leaves the previous tables in force.
"""

import fcntl
import logging
import os
import queue
import random
import re
import secrets
import select
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from aliases.models import Alias, MapGeneration, MapPublication

if TYPE_CHECKING:
    from aliases.postfix_maps import RenderedMaps

Delta = tuple[str, set[str], set[str]]  # (base text, added lines, removed lines)

logger = logging.getLogger(__name__)

COMMAND_TIMEOUT = 120  # seconds; postmap of a million lines takes a few


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


def request_publication(reason: str = "") -> None:
    """Call inside the transaction that changed data the maps are made from: the need to
    publish is recorded with the change, and a worker publishes after commit."""
    bump = {"requested": F("requested") + 1, "requested_at": timezone.now(), "reason": reason[:200]}
    if not MapGeneration.objects.filter(pk=1).update(**bump):
        MapGeneration.objects.get_or_create(pk=1)  # the very first change
        MapGeneration.objects.filter(pk=1).update(**bump)
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
    """Queue a publication on every mail host. A broker that is down loses nothing: the
    generation is in the database and each worker's reconcile publishes it."""
    from aliases.tasks import publish_maps

    for host in settings.MAP_HOSTS:
        try:
            publish_maps.apply_async(queue=queue_name(host), retry=False)
        except Exception as exc:  # kombu raises several types for an unreachable broker
            logger.warning("map publication for %s not queued (%s); the reconcile will publish it", host, exc)


def requested_generation() -> int:
    row = MapGeneration.objects.filter(pk=1).values_list("requested", "requested_at").first()
    return row[0] if row else 0


def host_state(host: str | None = None) -> MapPublication:
    state, _ = MapPublication.objects.get_or_create(host=host or settings.MAIL_HOST)
    return state


# --- the lock ---------------------------------------------------------------------------------


@contextmanager
def publication_lock() -> Iterator[bool]:
    """This host's map directory, locked across processes (all workers of a host share it;
    other hosts publish their own directories). Yields False when another publication holds it."""
    lock_path = Path(settings.POSTFIX_MAP_DIR).parent / f".{Path(settings.POSTFIX_MAP_DIR).name}.publish.lock"
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


# --- what is pending ----------------------------------------------------------------------------


def _expiry_passed(since: datetime | None, now: datetime) -> bool:
    if since is None:
        return False
    return Alias.objects.filter(expires_at__gt=since, expires_at__lte=now).exists()


def _reload_due(state: MapPublication, now: datetime) -> bool:
    interval = timedelta(seconds=settings.POSTFIX_RELOAD_MIN_INTERVAL)
    return state.last_reload_at is None or now - state.last_reload_at >= interval


def _needs_publication(state: MapPublication, now: datetime, full: bool) -> bool:
    if requested_generation() > state.published_generation or state.last_success_at is None:
        return True
    if state.last_error:
        return True
    if _expiry_passed(state.last_success_at, now):
        return True
    full_interval = timedelta(seconds=settings.MAP_FULL_RECONCILE_INTERVAL)
    return full and now - state.last_success_at >= full_interval


def _wait_for_quiet() -> None:
    """Let a burst of changes settle: wait until none arrived for the quiet spell, at most
    MAX_WAIT in all. Changes arriving later are picked up by the loop in publish()."""
    quiet = settings.MAP_PUBLISH_QUIET_MS / 1000
    deadline = time.monotonic() + settings.MAP_PUBLISH_MAX_WAIT_MS / 1000
    while True:
        row = MapGeneration.objects.filter(pk=1).values_list("requested_at", flat=True).first()
        if row is None:
            return
        idle = (timezone.now() - row).total_seconds()
        remaining = deadline - time.monotonic()
        if idle >= quiet or remaining <= 0:
            return
        time.sleep(min(quiet - idle, remaining))


# --- writing the maps ---------------------------------------------------------------------------


def _run(argv: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PublicationError(f"{argv[0]}: {exc}") from exc
    return result


def _postmap_argv(*args: str) -> list[str]:
    """The configured postmap, reading this host's Postfix configuration."""
    return [*shlex.split(settings.POSTMAP_COMMAND), "-c", str(settings.POSTFIX_CONFIG_DIR), *args]


def _postmap(*args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
    result = _run(_postmap_argv(*args), stdin)
    if check and result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise PublicationError(f"postmap {' '.join(args)} failed: {message[-1] if message else result.returncode}")
    return result


def _table(lines: list[str]) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in lines if line)


def _verify(temp: Path, expected: dict[str, str | None]) -> None:
    """Read the new table back: every sampled key gives its value; removed keys give nothing."""
    if not expected:
        return
    result = _postmap("-q", "-", f"hash:{temp}", stdin="".join(f"{key}\n" for key in expected), check=False)
    if result.returncode not in (0, 1) or (result.returncode == 1 and result.stderr.strip()):
        raise PublicationError(f"postmap -q on the new table failed: {result.stderr.strip()[:300]}")
    found = dict(line.split("\t", 1) for line in result.stdout.splitlines() if "\t" in line)
    for key, value in expected.items():
        if found.get(key) != value:
            got = found.get(key)
            raise PublicationError(f"verification of the new table: {key} gave {got!r}, expected {value!r}")


def _sample(text: str, size: int) -> list[str]:
    """The first and last line and random others, without splitting a million-line text."""
    if not text:
        return []
    first = text[: text.index("\n")]
    last = text[text.rfind("\n", 0, len(text) - 1) + 1 : -1]
    picked = {first, last}
    for _ in range(size):
        at = random.randrange(len(text))  # noqa: S311 (which lines to verify, not a secret)
        start = text.rfind("\n", 0, at) + 1
        picked.add(text[start : text.index("\n", start)])
    return sorted(line for line in picked if line)


def _delta(new_text: str, old_text: str, hint: "Delta | None") -> tuple[set[str], set[str]]:
    """(added, removed) lines. The renderer's hint is used only when the live source is exactly
    the text it was computed against; otherwise the two texts are compared."""
    if hint is not None and hint[0] == old_text:
        return hint[1], hint[2]
    old_set, new_set = set(old_text.splitlines()), set(new_text.splitlines())
    return new_set - old_set, old_set - new_set


def _temp_path(name: str) -> Path:
    """A fresh temporary name for a map, in the map directory (a rename into place is atomic
    only within one file system). Stale ones are swept by sweep_temporaries()."""
    return Path(settings.POSTFIX_MAP_DIR) / f".{name}.{secrets.token_hex(4)}.tmp"


# A temporary source, its table, and the file Berkeley DB builds that table in (left over when
# postmap is killed).
TEMPORARY = re.compile(r"^(__db\.)?\.[\w-]+\.[0-9a-f]{8}\.tmp(\.db)?\Z")


def _remove_temporaries(temp: Path) -> None:
    for path in (temp, Path(f"{temp}.db"), temp.with_name(f"__db.{temp.name}.db")):
        path.unlink(missing_ok=True)


def sweep_temporaries() -> list[str]:
    """Remove temporary sources and tables left in the map directory by a publication that was
    killed midway. Call only while holding the publication lock: then no build is running here."""
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


def _wait_for_exit(process: "subprocess.Popen[bytes]", timeout: float) -> int | None:
    """The exit code, taken the moment the process exits (Popen.wait with a timeout looks
    every so often, up to 50 ms apart); None when it ran past the timeout."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or already reaped
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)  # readable once the process has exited
        if not poller.poll(timeout * 1000):
            return None
    finally:
        os.close(pidfd)
    return process.wait()


# Lines postmap read but did not store as sent: the fed table is then not used.
FEED_PROBLEM = re.compile(r"duplicate entry|expected format|record too long")


def _widen(pipe: IO[bytes] | None) -> None:
    """Give a pipe the largest buffer an unprivileged process may (1 MiB by default, not 64
    KiB): a writer thread then hands postmap a chunk in one write instead of waiting for the
    interpreter lock after each 64 KiB it drained."""
    if pipe is None:
        return
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, min(limit, 16 << 20))
    except (OSError, ValueError):
        pass  # not Linux, or a limit that refuses it: the default buffer works, more slowly


class TableFeed:
    """A `postmap -i` building a map's table under a temporary name from lines sent while the
    renderer is still reading the database: the hash build needs no sorted input (sorted runs
    only make it faster), so most of a large render overlaps the postmap it feeds. The sorted
    source is written beside it afterwards; a feed that fails or reports a duplicate key is
    discarded and the map is built from its source as usual."""

    def __init__(self, name: str) -> None:
        self.path = _temp_path(name)
        self._errors = tempfile.TemporaryFile()  # a file, not a pipe: many warnings cannot stall postmap
        try:
            self._process = subprocess.Popen(  # noqa: S603 (the configured postmap)
                _postmap_argv("-i", f"hash:{self.path}"),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self._errors,
            )
        except OSError:
            self._errors.close()
            raise
        _widen(self._process.stdin)
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._idle = threading.Event()  # the writer has written all it was given
        self._broken = False
        self._closed = False
        self.discarded = False
        # Writing from a thread of its own: the renderer never waits for postmap to catch up.
        self._writer = threading.Thread(target=self._write, name=f"feed {name}", daemon=True)
        self._writer.start()

    def send(self, lines: list[str]) -> None:
        if lines:
            self.send_text("\n".join(lines) + "\n")

    def send_text(self, text: str) -> None:
        """Lines already joined, each ending in a newline."""
        if text:
            self._chunks.put(text.encode())

    def close(self) -> None:
        """No more lines: postmap finishes the table on its own."""
        if not self._closed:
            self._closed = True
            self._chunks.put(None)

    def hungry(self) -> bool:
        """Whether postmap has been handed everything sent so far (it may still be building
        from the pipe's buffer)."""
        return self._idle.is_set() and self._chunks.empty()

    def _write(self) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        while True:
            self._idle.set()
            chunk = self._chunks.get()
            self._idle.clear()
            if chunk is None:
                break
            if not self._broken:
                try:
                    stdin.write(chunk)
                except OSError:  # postmap exited: result() reports it
                    self._broken = True
        try:
            stdin.close()
        except OSError:
            self._broken = True

    def result(self) -> bool:
        """Wait for postmap; True when <path>.db holds every line sent, and nothing else."""
        self.close()
        self._writer.join()
        exit_code = _wait_for_exit(self._process, COMMAND_TIMEOUT)
        code: int | str = "timeout" if exit_code is None else exit_code
        if exit_code is None:
            self._stop()
        self._errors.seek(0)
        errors = self._errors.read().decode(errors="replace")
        self._errors.close()
        if code != 0 or self._broken or FEED_PROBLEM.search(errors):
            logger.info("fed table %s not used (exit %s): %s", self.path.name, code, errors.strip()[-300:])
            Path(f"{self.path}.db").unlink(missing_ok=True)
            return False
        return True

    def _stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self.close()
        self._writer.join()
        self._process.wait()

    def discard(self) -> None:
        """Stop postmap and remove what it wrote (safe to call at any time, and again)."""
        self.discarded = True
        self._stop()
        self._errors.close()
        _remove_temporaries(self.path)


def open_feed(name: str, mass_change: bool) -> TableFeed | None:
    """A feed for a map about to be read in full, when its table will be rebuilt whole anyway:
    there is no live table yet, or the renderer saw a mass change. (A periodic full re-read
    usually finds a few changed lines, which are applied to a copy of the live table instead.)"""
    if not mass_change and (Path(settings.POSTFIX_MAP_DIR) / f"{name}.db").exists():
        return None
    try:
        return TableFeed(name)
    except OSError as exc:  # no postmap: the usual build reports it
        logger.warning("map %s: postmap not started for the feed (%s)", name, exc)
        return None


def _apply_delta(
    name: str, new_text: str, old_text: str, temp: Path, hint: "Delta | None"
) -> dict[str, str | None] | None:
    """Build <temp>.db as a copy of the live table with the changed keys applied; returns the
    keys to read back (value, or None for a removed key), or None when the delta is too large."""
    added, removed = _delta(new_text, old_text, hint)
    if len(added) + len(removed) > settings.MAP_INCREMENTAL_MAX_LINES:
        return None
    added_table = _table(sorted(added))
    removed_keys = {line.split(" ", 1)[0] for line in removed} - added_table.keys()
    # Work on a copy: postmap -i/-d change a .db in place, which readers must not see.
    shutil.copyfile(Path(settings.POSTFIX_MAP_DIR) / f"{name}.db", f"{temp}.db")
    if removed_keys:
        keys = "".join(f"{key}\n" for key in sorted(removed_keys))
        _postmap("-d", "-", f"hash:{temp}", stdin=keys, check=False)
    if added_table:
        _postmap("-i", "-r", f"hash:{temp}", stdin="".join(f"{line}\n" for line in sorted(added)))
    expected: dict[str, str | None] = dict(added_table)
    expected.update(dict.fromkeys(sorted(removed_keys)[: settings.MAP_VERIFY_SAMPLE]))
    return expected


def _build_map(
    name: str,
    new_text: str,
    old_text: str | None,
    temp: Path,
    hint: "Delta | None" = None,
    feed: TableFeed | None = None,
) -> None:
    """Build <temp>.db beside the live map from its source <temp> (written by _write_source)
    and read it back; nothing live changes. With a feed, <temp>.db is the table it built from
    the same lines, if that succeeded."""
    live_db = Path(settings.POSTFIX_MAP_DIR) / f"{name}.db"
    try:
        expected: dict[str, str | None] | None = None
        if feed is not None and feed.result():
            expected = {}
            # The table gets the source's time and mode, as postmap gives them (Postfix warns
            # about a source newer than its table).
            shutil.copystat(temp, f"{temp}.db")
        elif old_text is not None and live_db.exists():
            expected = _apply_delta(name, new_text, old_text, temp, hint)
        if expected is None:
            Path(f"{temp}.db").unlink(missing_ok=True)
            _postmap(f"hash:{temp}")
            expected = {}
        expected.update(_table(_sample(new_text, settings.MAP_VERIFY_SAMPLE)))
        _verify(temp, expected)
    except OSError as exc:
        raise PublicationError(f"writing {name}: {exc.strerror or exc}") from exc


def _write_source(name: str, text: str, temp: Path) -> None:
    try:
        temp.write_text(text)
    except OSError as exc:
        raise PublicationError(f"writing {name}: {exc.strerror or exc}") from exc


# Refusals go live before the aliases they guard: a switched-off address is never, even for a
# moment, out of virtual while not yet refused (it would reach a catch-all).
INSTALL_ORDER = ("recipient_access", "sender_access")


def _install(names: list[str], temps: dict[str, Path], texts: dict[str, str]) -> None:
    map_dir = Path(settings.POSTFIX_MAP_DIR)
    ordered = sorted(names, key=lambda name: (name not in INSTALL_ORDER, names.index(name)))
    try:
        for name in ordered:
            # The .db first: its source is then never newer than it (Postfix warns about that).
            os.replace(f"{temps[name]}.db", map_dir / f"{name}.db")
            os.replace(temps[name], map_dir / name)
            _installed[map_dir / name] = (_identity(map_dir / name), texts[name])
    except OSError as exc:
        raise PublicationError(f"putting the new maps in place: {exc.strerror or exc}") from exc


# The sources this process put in place, by path, with the identity of the file it wrote
# (inode, size, mtime): reading a 50 MB source back for every change would cost more than the
# change. Any other writer makes a new file, and the identity no longer matches.
_installed: dict[Path, tuple[tuple[int, int, int], str]] = {}


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def live_source(name: str) -> str | None:
    map_dir = Path(settings.POSTFIX_MAP_DIR)
    if not (map_dir / f"{name}.db").exists():
        return None
    path = map_dir / name
    try:
        known = _installed.get(path)
        if known is not None and known[0] == _identity(path):
            return known[1]
        return path.read_text()
    except FileNotFoundError:
        return None


# A changed map of at most this many characters is built whole, together with the other small
# ones, by one postmap run and read back whole: that costs less than copying its live table to
# patch it, and checks every line rather than a sample. (The seven maps of a fresh publication
# are then built by two postmap processes, not seven.)
SMALL_MAP_CHARS = 256 * 1024


def _start_postmap(*args: str) -> "subprocess.Popen[str]":
    argv = _postmap_argv(*args)
    try:
        return subprocess.Popen(  # noqa: S603 (the configured postmap)
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    except OSError as exc:
        raise PublicationError(f"{argv[0]}: {exc}") from exc


def _finish(process: "subprocess.Popen[str]") -> tuple[int, str, str]:
    """Wait for a postmap started by _start_postmap: (exit code, output, errors)."""
    try:
        output, errors = process.communicate(timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        process.kill()
        process.communicate()
        raise PublicationError(f"postmap: {exc}") from exc
    return process.returncode, output, errors


class SmallMaps:
    """The small changed maps: their sources written and all their tables built by one postmap
    run, then each table dumped whole with `postmap -s` (which dumps only the first table it is
    given: one run per table, all at once) and compared with its source. The build runs while
    the large map's fed postmap finishes, the dumps while the large map is sampled."""

    def __init__(self, names: list[str], temps: dict[str, Path], sources: dict[str, str]) -> None:
        self.names, self.temps, self.sources = names, temps, sources
        self._running: list[subprocess.Popen[str]] = []
        self._build: subprocess.Popen[str] | None = None
        self._dumps: dict[str, subprocess.Popen[str]] = {}

    def start(self) -> None:
        for name in self.names:
            try:
                self.temps[name].write_text(self.sources[name])
            except OSError as exc:
                raise PublicationError(f"writing {name}: {exc.strerror or exc}") from exc
        if self.names:
            self._build = self._start(*(f"hash:{self.temps[name]}" for name in self.names))

    def start_dumps(self) -> None:
        """Wait for the build (it runs beside the large map's postmap), then start a dump of
        each table, to be read while the large map is built and sampled."""
        if self._build is None:
            return
        code, _, errors = _finish(self._build)
        if code != 0:
            # postmap stops at the first table it cannot build, and names its file.
            failed = [name for name in self.names if str(self.temps[name]) in errors] or self.names
            message = errors.strip().splitlines()
            raise PublicationError(f"postmap hash: of {', '.join(failed)} failed: {message[-1] if message else code}")
        # Postfix may case-fold a non-ASCII key otherwise than Python: such a table has every
        # key looked up (in verify) instead of being compared with a dump.
        dumped = [name for name in self.names if self.sources[name] and self.sources[name].isascii()]
        self._dumps = {name: self._start("-s", f"hash:{self.temps[name]}") for name in dumped}

    def verify(self) -> None:
        """Every table read back whole (raises on any difference)."""
        for name in self.names:
            if name in self._dumps:
                _compare_dump(name, _finish(self._dumps[name]), self.sources[name])
            elif self.sources[name]:
                _verify(self.temps[name], dict(_table(self.sources[name].splitlines())))

    def _start(self, *args: str) -> "subprocess.Popen[str]":
        process = _start_postmap(*args)
        self._running.append(process)
        return process

    def stop(self) -> None:
        """Kill whatever postmap is still running (after a failure elsewhere)."""
        for process in self._running:
            if process.poll() is None:
                process.kill()
                process.communicate()


def _dumped(line: str) -> str:
    """A source line as `postmap -s` prints it: key (lower-cased as the table stores it), tab,
    value."""
    key, value = line.split(" ", 1)
    return f"{key.translate(ASCII_LOWER)}\t{value}"


ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _compare_dump(name: str, dump: tuple[int, str, str], source: str) -> None:
    code, output, errors = dump
    if code != 0:
        raise PublicationError(f"postmap -s on the new {name} table failed: {errors.strip()[:300]}")
    expected = sorted(_dumped(line) for line in source.splitlines())
    got = sorted(output.splitlines())
    if got != expected:
        wrong = sorted(set(got) ^ set(expected)) or got
        raise PublicationError(
            f"verification of the new {name} table: {len(got)} entries read back, {len(expected)} "
            f"in its source (first difference {wrong[0]!r})"
        )


def _build_large(changed: dict[str, str | None], temps: dict[str, Path], rendered: "RenderedMaps") -> None:
    """Build (by feed, delta or full postmap) and sample the large maps, at once when several."""
    jobs = [
        partial(
            _build_map,
            name,
            rendered.sources[name],
            live,
            temps[name],
            rendered.deltas.get(name),
            rendered.feeds.get(name),
        )
        for name, live in changed.items()
    ]
    if len(jobs) <= 1:  # the usual case (virtual alone): no thread to start
        for run in jobs:
            run()
        return
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        for job in [pool.submit(job) for job in jobs]:
            job.result()  # the first failure is raised, after every build has finished


def write_maps(rendered: "RenderedMaps") -> list[str]:
    """Replace the maps whose content changed; returns their names."""
    changed: dict[str, str | None] = {}
    for name, text in rendered.sources.items():
        live = live_source(name)
        if live != text:
            changed[name] = live
    # Every changed map is built and verified first (the small ones by one postmap run and a
    # dump each, while the large one is sampled; all of these processes overlap); only when
    # all of them are good do they go live, one rename each. A failure leaves every live map
    # as it was: no mix of old and new tables.
    feeds, sources = rendered.feeds, rendered.sources
    small = [name for name in changed if name not in feeds and len(sources[name]) <= SMALL_MAP_CHARS]
    large = {name: live for name, live in changed.items() if name not in small}
    temps = {name: feeds[name].path if name in feeds else _temp_path(name) for name in changed}
    small_maps = SmallMaps(small, temps, sources)
    try:
        small_maps.start()
        for name in large:  # while the small ones build
            _write_source(name, sources[name], temps[name])
        small_maps.start_dumps()
        _build_large(large, temps, rendered)
        small_maps.verify()
        _install(list(changed), temps, sources)
    finally:
        small_maps.stop()
        for feed in feeds.values():  # including those of unchanged maps
            feed.discard()
        for temp in temps.values():
            _remove_temporaries(temp)
    return list(changed)


def reload_postfix() -> None:
    result = _run(shlex.split(settings.POSTFIX_RELOAD_COMMAND))
    if result.returncode != 0:
        raise PublicationError(f"postfix reload failed: {(result.stderr or result.stdout).strip()[:300]}")


def _line_counts(rendered: "RenderedMaps") -> dict[str, int]:
    return {name: text.count("\n") for name, text in rendered.sources.items()}


# --- the publication ------------------------------------------------------------------------------


def _publish_once(state: MapPublication, coalesce: bool, full: bool = False) -> Outcome:
    if coalesce:
        _wait_for_quiet()
    generation = requested_generation()
    started = timezone.now()
    host = state.host
    MapPublication.objects.filter(host=host).update(last_attempt_at=started)
    # Imported here: the renderer reads other features' modules, which import this one.
    from aliases.postfix_maps import directory_mailboxes, render_maps

    try:
        # The directory is read once per publication, whatever the number of owners.
        mailboxes = directory_mailboxes()
        rendered = render_maps(now=started, full=full, feed=open_feed, mailboxes=mailboxes)
        line_counts = _line_counts(rendered)  # counted while a fed postmap may still be building
        changed = write_maps(rendered)
    except Exception as exc:  # any failure: the previous tables stay, the error is shown
        message = str(exc)[:2000] or type(exc).__name__
        logger.error("map publication on %s failed: %s", host, message)
        MapPublication.objects.filter(host=host).update(last_error=message, last_error_at=timezone.now())
        return Outcome("failed", generation=generation, error=message)
    updates: dict[str, object] = {
        # The render started at `started`: aliases expiring after it are caught by the next run.
        "last_success_at": started,
        "published_generation": generation,
        "last_error": "",
        "line_counts": line_counts,
    }
    if changed:
        updates["publications"] = F("publications") + 1
        updates["reload_pending"] = True
    MapPublication.objects.filter(host=host).update(**updates)
    _schedule_next_expiry()
    logger.info("maps on %s at generation %s: %s", host, generation, ", ".join(changed) or "unchanged")
    return Outcome("published" if changed else "unchanged", changed=changed, generation=generation)


def _reload_if_due(host: str) -> bool:
    state = host_state(host)
    now = timezone.now()
    if not state.reload_pending or not _reload_due(state, now):
        return False
    try:
        reload_postfix()
    except PublicationError as exc:
        MapPublication.objects.filter(host=host).update(last_error=str(exc), last_error_at=now)
        return False
    MapPublication.objects.filter(host=host).update(last_reload_at=now, reload_pending=False)
    return True


def publish(*, force: bool = False, coalesce: bool = True, full: bool = False) -> Outcome:
    """Publish this host's maps if anything is pending (or always, with force). Safe to call
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
                if not (force or _needs_publication(state, timezone.now(), full)):
                    break
                # A forced publication (publish_maps) reads everything afresh.
                outcome = _publish_once(state, coalesce, full=force)
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


def _schedule_next_expiry() -> None:
    """Wake a worker at the next alias expiry, so it takes effect at that moment."""
    from aliases.tasks import publish_maps

    now = timezone.now()
    upcoming = Alias.objects.filter(enabled=True, expires_at__gt=now).order_by("expires_at")
    next_expiry = upcoming.values_list("expires_at", flat=True).first()
    if next_expiry is None or next_expiry - now > timedelta(hours=1):
        return  # the periodic reconcile covers far expiries (and the broker's ETA window)
    if next_expiry in _wakeups_queued:
        return  # one wake-up per expiry and process, not one per publication
    _wakeups_queued.add(next_expiry)
    try:
        publish_maps.apply_async(queue=queue_name(settings.MAIL_HOST), eta=next_expiry, retry=False)
    except Exception as exc:
        logger.warning("expiry wake-up not queued (%s); the reconcile will catch it", exc)
