"""The log follower: rotation in the middle of a burst (rename, copytruncate), restarts, and a
failed save. Whatever happens, the stored records are exactly those of the whole log read in
one go: none lost, none doubled."""

import gzip
import hashlib
import os
import random
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError

from benchmarks.trail import message_lines
from trail import services, tasks
from trail.logfile import LogReader, Position
from trail.models import Delivery, LogPosition
from trail.parser import Parser

pytestmark = pytest.mark.django_db

STAMP = "Dec  7 09:00:00"


class Writer:
    """Appends messages to the log the way postlogd and syslog do (O_APPEND, one write per line
    group), keeping its file open across a rename until told to reopen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rng = random.Random(7)
        self.written: list[str] = []
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 -- reopened by the test

    def messages(self, numbers: range) -> None:
        for n in numbers:
            lines = message_lines(n, STAMP, self.rng)
            self.written += lines
            self.file.write("\n".join(lines) + "\n")
            self.file.flush()

    def reopen(self) -> None:
        self.file.close()
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def close(self) -> None:
        self.file.close()


FIELDS = ("queue_id", "recipient", "original_recipient", "status", "sender", "client", "relay", "dsn", "delay", "reply")


def key(record: object) -> tuple[str, ...]:
    return (str(record.logged_at.timestamp()), *(str(getattr(record, name)) for name in FIELDS))


def expected(writer: Writer) -> Counter:
    return Counter(key(record) for record in Parser().parse(writer.written))


def stored(host: str) -> Counter:
    return Counter(key(record) for record in Delivery.objects.filter(host=host))


@pytest.fixture(autouse=True)
def log_in_utc(settings) -> None:
    settings.MAILLOG_TIME_ZONE = "UTC"  # as the expected records are parsed


@pytest.fixture
def log(tmp_path: Path):
    path = tmp_path / "maillog"
    writer = Writer(path)
    yield path, writer, f"host-{secrets.token_hex(4)}"
    writer.close()


def follower(path: Path, host: str) -> services.Follower:
    return services.Follower(path=path, host=host, grace=0)


def test_a_rename_rotation_in_the_middle_of_a_burst_loses_and_doubles_nothing(log) -> None:
    path, writer, host = log
    reader = follower(path, host)
    for start in range(0, 100, 7):
        writer.messages(range(start, min(start + 7, 100)))
        reader.step()
    os.rename(path, path.with_name("maillog.1"))
    writer.messages(range(100, 130))  # the writer still finishes lines in the renamed file
    reader.step()
    writer.reopen()
    for start in range(130, 250, 11):
        writer.messages(range(start, min(start + 11, 250)))
        reader.step()
    reader.catch_up()

    assert stored(host) == expected(writer)
    assert sum(expected(writer).values()) > 250


@pytest.mark.parametrize("after", [3, 120], ids=["shorter than before", "grown past the old offset"])
def test_a_copytruncate_in_the_middle_of_a_burst_loses_and_doubles_nothing(log, after: int) -> None:
    path, writer, host = log
    reader = follower(path, host)
    writer.messages(range(0, 40))
    reader.step()
    writer.messages(range(40, 80))  # not read yet when the log is copied and cut
    shutil.copyfile(path, path.with_name("maillog.1"))
    os.truncate(path, 0)
    writer.messages(range(80, 80 + after))
    reader.catch_up()
    writer.messages(range(80 + after, 100 + after))
    reader.catch_up()

    assert stored(host) == expected(writer)


def test_a_line_written_in_two_parts_is_read_once_whole(log) -> None:
    path, writer, host = log
    reader = follower(path, host)
    writer.messages(range(0, 5))
    last = writer.written[-1]
    writer.written[-1:] = []
    with open(path, "r+", encoding="utf-8") as f:  # take the last line back, then write it in halves
        f.truncate(os.path.getsize(path) - len(last) - 1)
    with open(path, "a", encoding="utf-8") as f:
        f.write(last[:30])
    reader.step()
    with open(path, "a", encoding="utf-8") as f:
        f.write(last[30:] + "\n")
    writer.written.append(last)
    reader.catch_up()

    assert stored(host) == expected(writer)


def test_a_restart_resumes_where_the_last_one_stopped(log) -> None:
    path, writer, host = log
    writer.messages(range(0, 60))
    first = follower(path, host)
    first.catch_up()
    first.close()
    writer.messages(range(60, 120))
    second = follower(path, host)
    second.catch_up()

    assert stored(host) == expected(writer)
    assert LogPosition.objects.get(host=host).offset == path.stat().st_size


def compress(path: Path) -> None:
    with open(path, "rb") as plain, gzip.open(f"{path}.gz", "wb") as packed:
        shutil.copyfileobj(plain, packed)
    path.unlink()


@pytest.mark.parametrize("rotation", ["rename", "copytruncate", "rename, then gzip", "copytruncate, then gzip"])
def test_a_rotation_while_stopped_is_found_on_restart(log, rotation: str) -> None:
    path, writer, host = log
    writer.messages(range(0, 50))
    first = follower(path, host)
    first.catch_up()
    first.close()
    writer.messages(range(50, 80))  # written while the follower is stopped
    rotated = path.with_name("maillog.20261207-090000")
    if rotation.startswith("rename"):
        os.rename(path, rotated)
        writer.reopen()
    else:
        shutil.copyfile(path, rotated)
        os.truncate(path, 0)
    if rotation.endswith("gzip"):
        compress(rotated)
    writer.messages(range(80, 110))
    second = follower(path, host)
    second.catch_up()

    assert stored(host) == expected(writer)


def test_a_restart_in_the_middle_of_a_compressed_rotated_file_resumes_in_it(log) -> None:
    path, writer, host = log
    writer.messages(range(0, 50))
    first = follower(path, host)
    first.catch_up()
    first.close()
    writer.messages(range(50, 3000))  # several megabytes while stopped
    os.rename(path, path.with_name("maillog.1"))
    compress(path.with_name("maillog.1"))
    writer.reopen()
    writer.messages(range(3000, 3050))
    second = follower(path, host)
    assert second.step()  # one chunk of the decompressed rest, then stopped again
    second.close()
    third = follower(path, host)
    third.catch_up()

    assert stored(host) == expected(writer)


def test_a_failed_save_stores_neither_the_records_nor_the_position(log, monkeypatch) -> None:
    path, writer, host = log
    writer.messages(range(0, 3000))  # several chunks
    reader = follower(path, host)
    assert reader.step()
    saved_offset = LogPosition.objects.get(host=host).offset
    saved_records = Delivery.objects.filter(host=host).count()

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(LogPosition.objects, "update_or_create", broken)
    with pytest.raises(RuntimeError):
        reader.step()
    monkeypatch.undo()
    assert LogPosition.objects.get(host=host).offset == saved_offset
    assert Delivery.objects.filter(host=host).count() == saved_records

    again = follower(path, host)  # what the long-running loop does after an error
    again.catch_up()
    assert stored(host) == expected(writer)


def test_records_past_the_retention_are_deleted(log, settings) -> None:
    path, writer, host = log
    writer.messages(range(0, 30))
    follower(path, host).catch_up()
    total = Delivery.objects.filter(host=host).count()
    old = list(Delivery.objects.filter(host=host).values_list("pk", flat=True)[:10])
    Delivery.objects.filter(pk__in=old).update(logged_at=services.timezone.now() - services.timedelta(days=31))
    settings.TRAIL_RETENTION_DAYS = 30

    assert tasks.delete_expired_records() == 10  # what Celery beat runs hourly
    assert Delivery.objects.filter(host=host).count() == total - 10
    assert tasks.delete_expired_records() == 0  # idempotent
    assert settings.CELERY_BEAT_SCHEDULE["trail-retention"]["task"] == "trail.tasks.delete_expired_records"


def test_follow_maillog_once_reads_the_configured_log(log, settings) -> None:
    path, writer, host = log
    writer.messages(range(0, 20))
    settings.MAILLOG_FILE = path
    settings.MAIL_HOST = host
    out = StringIO()
    call_command("follow_maillog", "--once", stdout=out)
    call_command("follow_maillog", "--once", stdout=out)  # a second run finds nothing new

    assert stored(host) == expected(writer)
    records = sum(expected(writer).values())
    assert out.getvalue().splitlines() == [
        f"{len(writer.written)} lines read, {records} records stored",
        "0 lines read, 0 records stored",
    ]


def test_postfix_writes_the_log_the_follower_reads_as_the_generated_configuration_says() -> None:
    out = StringIO()
    call_command("postfix_config", "--part", "main.cf", stdout=out)
    assert f"maillog_file = {settings.MAILLOG_FILE}" in out.getvalue().splitlines()
    live = subprocess.run(
        ["/usr/sbin/postconf", "-c", str(settings.POSTFIX_CONFIG_DIR), "-h", "maillog_file"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert live.stdout.strip() == str(settings.MAILLOG_FILE)


def test_the_long_running_loop_starts_again_from_the_saved_position_after_a_database_error(
    tmp_path, settings, monkeypatch, transactional_db
) -> None:
    path, host = tmp_path / "maillog", f"host-{secrets.token_hex(4)}"
    writer = Writer(path)
    writer.messages(range(0, 3000))  # several chunks
    settings.MAILLOG_FILE, settings.MAIL_HOST = path, host
    saves = []
    real_save = services._save

    def flaky_save(*args, **kwargs):
        saves.append(1)
        if len(saves) == 2:
            raise DatabaseError("server closed the connection unexpectedly")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(services, "_save", flaky_save)
    want = expected(writer)
    services.follow(stop=lambda: stored(host) == want, poll_seconds=0.01)
    writer.close()

    assert stored(host) == want and len(saves) > 3


def test_a_file_nothing_was_read_from_is_not_mistaken_for_an_older_rotated_one(tmp_path: Path) -> None:
    # Saved at offset 0 (a new file right after a switch): its fingerprint is of no bytes, which
    # every file matches; only the file itself, by inode, may be taken for it.
    path = tmp_path / "maillog"
    older = Writer(tmp_path / "maillog.1")
    older.messages(range(0, 5))
    older.close()
    compress(tmp_path / "maillog.1")
    plain = Writer(tmp_path / "maillog.2")  # another old one, not compressed
    plain.messages(range(100, 103))
    plain.close()
    current = Writer(path)
    current.messages(range(5, 10))
    gone = Position(device=0, inode=1, offset=0, fingerprint=hashlib.sha256(b"").hexdigest(), fingerprint_length=0)
    reader = LogReader(path, gone)

    assert reader.read_lines() == current.written
    current.close()
    reader.close()


def test_follow_maillog_killed_at_any_moment_and_restarted_stores_every_record_once(tmp_path: Path) -> None:
    # The real command in its own process and database, killed with SIGKILL (no clean-up at all)
    # while the log grows, three times, then left to finish.
    env = dict(
        os.environ,
        MAILADMIN_STATE_DIR=str(tmp_path),
        MAILADMIN_DATABASE_URL="",
        MAILADMIN_MAILLOG_FILE=str(tmp_path / "maillog"),
        MAILADMIN_MAIL_HOST="crash",
        MAILADMIN_MAILLOG_POLL_MS="20",
        MAILADMIN_MAILLOG_TIME_ZONE="UTC",
    )
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, timeout=120)
    writer = Writer(tmp_path / "maillog")
    database = tmp_path / "mailadmin.sqlite3"

    def saved_offset() -> int:
        with sqlite3.connect(database) as db:
            row = db.execute("SELECT MAX(`offset`) FROM trail_logposition").fetchone()
        return row[0] or 0

    offsets = [0]
    for round_ in range(3):
        writer.messages(range(round_ * 1000, round_ * 1000 + 50))
        follower_process = subprocess.Popen([*manage, "follow_maillog"], env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while saved_offset() <= offsets[-1] and time.monotonic() < deadline:  # following now
            time.sleep(0.05)
        for start in range(round_ * 1000 + 50, (round_ + 1) * 1000, 50):
            writer.messages(range(start, start + 50))
            time.sleep(0.01)
        time.sleep(random.Random(round_).uniform(0.0, 0.2))
        follower_process.kill()
        follower_process.wait()
        offsets.append(saved_offset())
    writer.close()
    subprocess.run([*manage, "follow_maillog", "--once"], env=env, check=True, timeout=300, stdout=subprocess.DEVNULL)

    assert offsets == sorted(offsets) and len(set(offsets)) == 4  # each one was killed while following
    with sqlite3.connect(database) as db:
        rows = db.execute(f"SELECT {', '.join(FIELDS)} FROM trail_delivery").fetchall()
    found = Counter(tuple("None" if value is None else str(value) for value in row) for row in rows)
    want = Counter(key(record)[1:] for record in Parser().parse(writer.written))
    assert found == want
