"""The postmap boundary: the only module that runs postmap, postconf or postfix.

A Table is a name in this host's map directory and the configured type (lmdb, cdb, hash).
build_all() makes databases under temporary names from their sources, side by side;
install() renames one into place; put() and delete() change a live lmdb: table in place (one
transaction per key: a reader sees each key old or new, never a missing or half-written one);
query(), query_tables() and dump() read back.
Every failure is a PostmapError.
"""

import os
import secrets
import shlex
import subprocess
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

COMMAND_TIMEOUT = 120  # seconds; postmap of a million lines takes a few
POSTCONF = "/usr/sbin/postconf"
SUFFIXES = {"lmdb": ".lmdb", "cdb": ".cdb", "hash": ".db"}
SMALL_SOURCE = 1000  # lines (about 64 KB): built in less time than a postmap start
# Lines written at a time: a source is never one string (a million lines are 55 MB, and making
# and encoding that string took longer than writing its lines in batches).
WRITE_BATCH = 10_000


class PostmapError(Exception):
    """A postmap or postfix command failed; nothing live was changed by the failing step."""


@dataclass(frozen=True)
class Table:
    path: Path  # the source file; Postfix opens TYPE:path
    type: str

    @property
    def spec(self) -> str:
        return f"{self.type}:{self.path}"

    @property
    def database(self) -> Path:
        return Path(f"{self.path}{SUFFIXES[self.type]}")

    def exists(self) -> bool:
        return self.database.exists()


@dataclass(frozen=True)
class Lookup:
    """What a table answers for some keys: found key -> value; the others are missing."""

    found: dict[str, str]
    missing: frozenset[str]


# postmap -q processes started, each with the table and the keys it is to be fed.
Asked = list[tuple[Table, Collection[str], subprocess.Popen[str]]]


def live(name: str) -> Table:
    return Table(Path(settings.POSTFIX_MAP_DIR) / name, settings.POSTFIX_MAP_TYPE)


def temporary(name: str) -> Table:
    """A fresh temporary name beside the live table (a rename is atomic within one file system)."""
    return Table(Path(settings.POSTFIX_MAP_DIR) / f".{name}.{secrets.token_hex(4)}.tmp", settings.POSTFIX_MAP_TYPE)


def _run(argv: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostmapError(f"{argv[0]}: {exc}") from exc


def _postmap_argv(*args: str) -> list[str]:
    return [*shlex.split(settings.POSTMAP_COMMAND), "-c", str(settings.POSTFIX_CONFIG_DIR), *args]


def _checked(args: tuple[str, ...], returncode: int, stdout: str, stderr: str, allowed: Collection[int]) -> str:
    # postmap reports a bad line, a duplicate or a failed update as a warning, and goes on. Exit
    # 1 is also what a table it cannot open gives (-q, -d): only its "fatal:" tells them apart.
    if returncode not in allowed or "warning:" in stderr or "fatal:" in stderr:
        message = (stderr or stdout).strip().splitlines()
        raise PostmapError(f"postmap {' '.join(args[:2])} failed: {message[-1] if message else returncode}")
    return stdout


def _postmap(*args: str, stdin: str = "", allowed: Collection[int] = (0,)) -> str:
    result = _run(_postmap_argv(*args), stdin)
    return _checked(args, result.returncode, result.stdout, result.stderr, allowed)


def build_all(sources: Iterable[tuple[Table, Sequence[str], Collection[str]]]) -> dict[Table, Lookup]:
    """Write each table's source (its lines), build its database (under the table's, temporary,
    name) and return what it answers for the keys given with it. A large table's postmap starts
    as soon as its source is written and runs while the caller makes the next source (`sources`
    may be a generator), so the builds and the render share the cores; the small ones are built
    together by one postmap at the end (a postmap start costs more than their build). Each
    table is read back as soon as it is built, while the others still build. Serves the
    full-publication targets (docs/postfix.md)."""
    building: list[tuple[list[Table], subprocess.Popen[str]]] = []
    small: list[Table] = []
    keys: dict[Table, Collection[str]] = {}
    asked: Asked = []
    try:
        for table, lines, table_keys in sources:
            keys[table] = table_keys
            try:
                with open(table.path, "w") as source:
                    for start in range(0, len(lines), WRITE_BATCH):
                        source.write("\n".join(lines[start : start + WRITE_BATCH]) + "\n")
            except OSError as exc:
                raise PostmapError(f"writing {table.path.name}: {exc.strerror or exc}") from exc
            if len(lines) < SMALL_SOURCE:
                small.append(table)
            else:
                building.append(([table], _start(table.spec, stdin=subprocess.DEVNULL)))
        if small:  # waited for first: built in a moment
            building.insert(0, (small, _start(*(table.spec for table in small), stdin=subprocess.DEVNULL)))
        for tables, process in building:
            stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
            _checked(tuple(table.spec for table in tables), process.returncode, stdout, stderr, (0,))
            _ask({table: keys[table] for table in tables}, asked)
        return _answers(asked)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostmapError(f"postmap: {exc}") from exc
    finally:
        _stop([*(process for _, process in building), *(process for *_, process in asked)])


def install(built: Table, name: str) -> None:
    """Rename a built table into place: the database first, so the source is never newer. A
    table made by copy() has no source: the live one, no longer describing it, goes."""
    target = live(name)
    try:
        os.replace(built.database, target.database)
        if built.path.exists():
            os.replace(built.path, target.path)
        else:
            target.path.unlink(missing_ok=True)
    except OSError as exc:
        raise PostmapError(f"putting {name} in place: {exc.strerror or exc}") from exc


def copy(table: Table, into: Table) -> None:
    """A copy of a table's database, to update and rename (hash: has no safe in-place update)."""
    try:
        with open(table.database, "rb") as source, open(into.database, "wb") as target:
            os.sendfile(target.fileno(), source.fileno(), 0, os.fstat(source.fileno()).st_size)
    except OSError as exc:
        raise PostmapError(f"copying {table.path.name}: {exc.strerror or exc}") from exc


def put(table: Table, entries: Mapping[str, str]) -> None:
    if entries:
        table.path.unlink(missing_ok=True)  # the source no longer describes the table
        _postmap("-i", "-r", table.spec, stdin="".join(f"{key} {value}\n" for key, value in entries.items()))


def delete(table: Table, keys: Collection[str]) -> None:
    if keys:
        table.path.unlink(missing_ok=True)
        # Exit 1: some key was not there, which is what we want anyway.
        _postmap("-d", "-", table.spec, stdin="".join(f"{key}\n" for key in keys), allowed=(0, 1))


def _lookup(keys: Collection[str], output: str) -> Lookup:
    found = dict(line.split("\t", 1) for line in output.splitlines() if "\t" in line)
    return Lookup(found, frozenset(keys) - found.keys())


def query(table: Table, keys: Collection[str]) -> Lookup:
    if not keys:
        return Lookup({}, frozenset())
    output = _postmap("-q", "-", table.spec, stdin="".join(f"{key}\n" for key in keys), allowed=(0, 1))
    return _lookup(keys, output)


def query_tables(requests: Mapping[Table, Collection[str]]) -> dict[Table, Lookup]:
    """query() of several tables, one postmap each, run side by side: as long as the slowest,
    not the sum (explain asks up to seven tables a round, a publication looks at every table
    it changes)."""
    asked: Asked = []
    try:
        _ask(requests, asked)
        return _answers(asked) | {table: Lookup({}, frozenset()) for table, keys in requests.items() if not keys}
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostmapError(f"postmap -q: {exc}") from exc
    finally:
        _stop(process for *_, process in asked)


def _ask(requests: Mapping[Table, Collection[str]], asked: Asked) -> None:
    """Start a postmap -q for each table with keys (it reads them when _answers() feeds it)."""
    for table, keys in requests.items():
        if keys:
            asked.append((table, keys, _start("-q", "-", table.spec)))


def _answers(asked: Asked) -> dict[Table, Lookup]:
    """The keys and answers are a few lines, well within a pipe's buffer, so each process is
    fed and read in turn without blocking."""
    answers = {}
    for table, keys, process in asked:
        stdout, stderr = process.communicate("".join(f"{key}\n" for key in keys), timeout=COMMAND_TIMEOUT)
        answers[table] = _lookup(keys, _checked(("-q", "-"), process.returncode, stdout, stderr, (0, 1)))
    return answers


def _start(*args: str, stdin: int = subprocess.PIPE) -> subprocess.Popen[str]:
    argv = _postmap_argv(*args)
    return subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603


def _stop(processes: Iterable[subprocess.Popen[str]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def dump(table: Table) -> dict[str, str]:
    output = _postmap("-s", table.spec)
    return dict(line.split("\t", 1) for line in output.splitlines() if "\t" in line)


def remove(table: Table) -> None:
    for path in (table.path, table.database, table.path.with_name(f"__db.{table.path.name}.db")):
        path.unlink(missing_ok=True)


def reload_postfix() -> None:
    result = _run(shlex.split(settings.POSTFIX_RELOAD_COMMAND))
    if result.returncode != 0:
        raise PostmapError(f"postfix reload failed: {(result.stderr or result.stdout).strip()[:300]}")


# postconf reads a host's existing configuration (manage.py postfix_apply merges into it).


def postconf_value(config_dir: Path, parameter: str) -> str:
    """A main.cf parameter's value with $names expanded, as Postfix uses it."""
    result = _run([POSTCONF, "-c", str(config_dir), "-xh", parameter])
    if result.returncode != 0:
        raise PostmapError(f"postconf -c {config_dir} cannot read {parameter}: {result.stderr.strip()}")
    return result.stdout.strip()


def postconf_map_types(config_dir: Path) -> set[str]:
    """The table types this Postfix supports (postconf -m)."""
    return set(_run([POSTCONF, "-c", str(config_dir), "-m"]).stdout.split())


def postconf_warnings(config_dir: Path) -> list[str]:
    """What postconf says about the configuration in config_dir: nothing when it is sound."""
    result = _run([POSTCONF, "-c", str(config_dir)])
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    return warnings or ([f"postconf exited with {result.returncode}"] if result.returncode != 0 else [])
