"""CSV import and export (bulk/): dry runs that list every error by line and change nothing,
imports into the real directory and the published Postfix maps, rows applied one by one and
whole, imports that may run twice, hostile files, and exports that no spreadsheet runs."""

import csv
import io
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.http import HttpRequest
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import directory
from accounts.cram_md5 import cram_md5_hash, verify_cram_md5
from aliases.models import Alias, AliasTombstone, Domain
from aliases.services import creation_refusal
from audit.models import AuditEvent
from bulk import csvfiles, services
from bulk.models import ImportJob, ImportRow
from localservices.slapd import Slapd
from mfa import sealing
from postfix import publication
from postfix.models import MapGeneration
from tests.test_publication import lookup, map_dir  # noqa: F401 -- map_dir is a fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def alias_domain() -> Domain:
    domain, _ = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})
    return domain


@pytest.fixture
def admin(sign_in: Callable[..., Client]) -> Client:
    return sign_in("admin")


@pytest.fixture
def cleanup_uids() -> list[str]:
    uids: list[str] = []
    yield uids
    for uid in uids:
        directory.delete_user(uid)


def upload(client: Client, kind: str, text: str | bytes, name: str = "import.csv"):
    data = text.encode() if isinstance(text, str) else text
    return client.post("/bulk/", {"kind": kind, "file": SimpleUploadedFile(name, data, "text/csv")})


def dry_run(client: Client, kind: str, text: str) -> ImportJob:
    """Upload, and play the worker's part."""
    response = upload(client, kind, text)
    assert response.status_code == 302, response.content.decode()[:3000]
    job = ImportJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))
    assert services.run_import(job.pk) == "done"
    job.refresh_from_db()
    return job


def apply(client: Client, dry: ImportJob) -> ImportJob:
    response = client.post(f"/bulk/imports/{dry.pk}/import/")
    assert response.status_code == 302
    job = ImportJob.objects.get(source=dry)
    assert response["Location"] == f"/bulk/imports/{job.pk}/"
    assert services.run_import(job.pk) == "done"
    job.refresh_from_db()
    return job


def outcomes(job: ImportJob) -> dict[int, str]:
    return dict(job.rows.values_list("line", "outcome"))


def state() -> str:
    """What an import could change in the database (the directory is compared separately)."""
    return repr(
        [list(model.objects.order_by("pk").values()) for model in (Alias, AliasTombstone, Domain, MapGeneration)]
        + [list(AuditEvent.objects.exclude(action__startswith="bulk.").order_by("pk").values())]
    )


def tag() -> str:
    return secrets.token_hex(3)


# --- dry runs ----------------------------------------------------------------------------------


def test_a_dry_run_lists_every_error_by_line_and_changes_nothing(admin, alias_domain, make_directory_user) -> None:
    owner = make_directory_user()
    t = tag()
    text = (
        "owner,address,note,expires_on\n"
        f"{owner.uid},good{t}@{alias_domain.name},fine,\n"
        f"nobody{t},x{t}@{alias_domain.name},,\n"
        f"{owner.uid},bad name{t}@{alias_domain.name},,\n"
        "\n"
        f"{owner.uid},past{t}@{alias_domain.name},,2001-01-01\n"
        f"{owner.uid},elsewhere{t}@not-ours.example,,\n"
        f'{owner.uid},also{t}@{alias_domain.name},"two\nlines",\n'
        f"{owner.uid},fine{t}@{alias_domain.name},,\n"
    )
    before = state()
    job = dry_run(admin, "aliases", text)
    assert state() == before
    assert outcomes(job) == {2: "valid", 3: "error", 4: "error", 6: "error", 7: "error", 8: "error", 10: "valid"}
    page = admin.get(f"/bulk/imports/{job.pk}/").content.decode()
    assert "Errors by line" in page and "Import 2 rows, leave out the 5 with errors" in page
    messages = dict(job.rows.filter(outcome="error").values_list("line", "message"))
    assert "There is no user" in messages[3]
    assert messages[4].startswith("address: ")
    assert "Choose a day after today" in messages[6]
    assert "not an alias domain" in messages[7]
    assert "note: Control characters" in messages[8]
    for line in messages:
        assert f'<td data-label="Line">{line}</td>' in page


def test_a_users_dry_run_checks_rows_as_the_create_user_form_does(admin, make_directory_user) -> None:
    taken = make_directory_user()
    t = tag()
    text = (
        "uid,name,mail,password_equivalent_hash\n"
        f"new{t},New Person,new{t}@{settings.MAIL_DOMAIN},\n"
        f"{taken.uid},Taken Person,other{t}@{settings.MAIL_DOMAIN},\n"
        f"Bad{t},Bad Uid,bad{t}@{settings.MAIL_DOMAIN},\n"
        f"hash{t},Hash Person,hash{t}@{settings.MAIL_DOMAIN},{{CRAM-MD5}}xyz\n"
        f"dom{t},Other Domain,dom{t}@elsewhere.example,\n"
        f"nm{t},<script>,nm{t}@{settings.MAIL_DOMAIN},\n"
    )
    job = dry_run(admin, "users", text)
    assert outcomes(job) == {2: "valid", 3: "error", 4: "error", 5: "error", 6: "error", 7: "error"}
    messages = dict(job.rows.filter(outcome="error").values_list("line", "message"))
    assert messages[3] == "uid: A user with this uid already exists."
    assert "password_equivalent_hash" in messages[5]
    assert messages[6].startswith("mail: Mailboxes live in")
    assert messages[7].startswith("name: ")
    assert directory.get_user(f"new{t}") is None


# --- imports -----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_imported_users_are_in_the_directory_and_their_aliases_in_the_published_map(
    admin,
    alias_domain,
    map_dir,  # noqa: F811
    cleanup_uids,
) -> None:
    t = tag()
    given_hash = cram_md5_hash("the password they had before")
    users = (
        "uid,name,mail,password_equivalent_hash\n"
        f"ann{t},Ann Example,ann{t}@{settings.MAIL_DOMAIN},\n"
        f"ben{t},Ben Example,ben{t}@{settings.MAIL_DOMAIN},{given_hash}\n"
    )
    cleanup_uids.extend([f"ann{t}", f"ben{t}"])
    job = apply(admin, dry_run(admin, "users", users))
    assert outcomes(job) == {2: "created", 3: "created"}
    assert directory.get_user(f"ann{t}").mail == f"ann{t}@{settings.MAIL_DOMAIN}"
    assert directory.password_hash(f"ben{t}") == given_hash

    # The generated password, once; it opens the account, and is then kept nowhere.
    response = admin.post(f"/bulk/imports/{job.pk}/passwords/")
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    handed = list(csv.reader(io.StringIO(response.content.decode())))
    assert handed[0] == ["uid", "initial_password"] and [row[0] for row in handed[1:]] == [f"ann{t}"]
    assert verify_cram_md5(handed[1][1], directory.password_hash(f"ann{t}"))
    assert not job.rows.exclude(sealed_password="").exists()
    again = admin.post(f"/bulk/imports/{job.pk}/passwords/", follow=True)
    assert "handed over already" in again.content.decode() and handed[1][1] not in again.content.decode()
    assert AuditEvent.objects.filter(action="account.create", target=f"ann{t}").get().actor_name == (
        admin.directory_user.uid
    )

    aliases = (
        "address,owner,site,note,enabled\n"
        f"shop{t}@{alias_domain.name},ann{t},https://shop.example.com/signup,for shopping,\n"
        f"off{t}@{alias_domain.name},ben{t},,,no\n"
    )
    job = apply(admin, dry_run(admin, "aliases", aliases))
    assert outcomes(job) == {2: "created", 3: "created"}
    shop = Alias.objects.get(local_part=f"shop{t}")
    assert (shop.kind, shop.site, shop.label, shop.owner.username) == (
        "site",
        "shop.example.com",
        "for shopping",
        f"ann{t}",
    )
    assert not Alias.objects.get(local_part=f"off{t}").enabled
    outcome = publication.publish(coalesce=False)
    assert outcome.status == "published", outcome.error
    assert lookup("virtual", f"shop{t}@{alias_domain.name}") == f"ann{t}@{settings.MAIL_DOMAIN}"
    assert lookup("virtual", f"off{t}@{alias_domain.name}") is None
    assert AuditEvent.objects.filter(action="bulk.import-finished", target=f"import {job.pk}").exists()


def test_a_row_failing_in_the_middle_is_not_half_applied_and_the_rows_around_it_are(
    admin, alias_domain, make_directory_user, monkeypatch
) -> None:
    owner = make_directory_user()
    t = tag()
    text = "address,owner,enabled\n" + "".join(f"row{n}{t}@{alias_domain.name},{owner.uid},no\n" for n in range(1, 6))
    dry = dry_run(admin, "aliases", text)
    assert set(outcomes(dry).values()) == {"valid"}
    switch_off = services.set_alias_enabled

    def fails_on_row_three(request, alias, enabled, actor=None):
        if alias.local_part == f"row3{t}":
            raise services.AliasRefused("the database refused it")  # after the alias was made
        return switch_off(request, alias, enabled, actor=actor)

    monkeypatch.setattr(services, "set_alias_enabled", fails_on_row_three)
    job = apply(admin, dry)
    assert outcomes(job) == {2: "created", 3: "created", 4: "error", 5: "created", 6: "created"}
    made = set(Alias.objects.filter(local_part__endswith=t).values_list("local_part", flat=True))
    assert made == {f"row{n}{t}" for n in (1, 2, 4, 5)}
    assert not Alias.objects.filter(local_part__endswith=t, enabled=True).exists()
    assert not AuditEvent.objects.filter(target=f"row3{t}@{alias_domain.name}").exists()
    assert job.rows.get(line=4).message == "the database refused it"


def test_running_an_import_twice_or_importing_the_file_again_applies_nothing_twice(
    admin, alias_domain, make_directory_user
) -> None:
    owner = make_directory_user()
    t = tag()
    text = "address,owner\n" + "".join(f"again{n}{t}@{alias_domain.name},{owner.uid}\n" for n in range(3))
    job = apply(admin, dry_run(admin, "aliases", text))
    events = AuditEvent.objects.filter(action="alias.create-for").count()
    generation = MapGeneration.objects.get().requested
    # The task delivered twice (or late): the job is done, nothing happens.
    assert services.run_import(job.pk) == "nothing to do"
    # Half-way when its worker died: the rows recorded are skipped, the rest applied once.
    ImportJob.objects.filter(pk=job.pk).update(
        state=ImportJob.State.RUNNING, heartbeat_at=None, sealed_content=sealing.seal(text)
    )
    job.rows.filter(line=4).delete()
    Alias.objects.filter(local_part=f"again2{t}").delete()
    assert services.run_import(job.pk) == "done"
    assert outcomes(job) == {2: "created", 3: "created", 4: "created"}
    assert AuditEvent.objects.filter(action="alias.create-for").count() == events + 1
    # The same file again: everything is already there.
    dry = dry_run(admin, "aliases", text)
    assert set(outcomes(dry).values()) == {"unchanged"}
    assert "Nothing to import" in admin.get(f"/bulk/imports/{dry.pk}/").content.decode()
    assert Alias.objects.filter(local_part__startswith="again", local_part__endswith=t).count() == 3
    assert MapGeneration.objects.get().requested == generation + 1


def test_imported_aliases_count_against_nobodys_creation_rate(
    admin, alias_domain, make_directory_user, settings
) -> None:
    settings.ALIAS_CREATION_RATE = 2
    person = make_directory_user()
    text = "address,owner\n" + "".join(f"rate{n}{tag()}@{alias_domain.name},{person.uid}\n" for n in range(3))
    job = apply(admin, dry_run(admin, "aliases", text))
    assert set(outcomes(job).values()) == {"created"}
    event = AuditEvent.objects.filter(action="alias.create-for").order_by("-pk").first()
    assert event.actor_name == admin.directory_user.uid and event.detail.startswith(f"for {person.uid}, kind custom")
    for uid in (person.uid, admin.directory_user.uid):
        assert creation_refusal(User.objects.get(username=uid)) is None


def test_a_users_import_resumed_after_a_crash_hands_over_the_password_the_entry_has(admin, cleanup_uids) -> None:
    t = tag()
    uid, mail = f"crash{t}", f"crash{t}@{settings.MAIL_DOMAIN}"
    cleanup_uids.append(uid)
    dry = dry_run(admin, "users", f"uid,name,mail\n{uid},Crash Test,{mail}\n")
    job = services.start_import(
        _request_of(admin), "users", "x.csv", f"uid,name,mail\n{uid},Crash Test,{mail}\n", 1, source=dry
    )
    # The worker chose the password, wrote the entry and died before recording it.
    password = services.generated_password()
    ImportRow.objects.create(job=job, line=2, key=uid, outcome="pending", sealed_password=sealing.seal(password))
    directory.create_user(uid, "Crash Test", "Test", mail, password)
    assert services.run_import(job.pk) == "done"
    assert outcomes(job) == {2: "created"}
    handed = admin.post(f"/bulk/imports/{job.pk}/passwords/").content.decode()
    assert f"{uid},{password}" in handed
    # Pending without an entry: the entry is made with the password already chosen.
    uid2 = f"crash2{t}"
    cleanup_uids.append(uid2)
    text = f"uid,name,mail\n{uid2},Crash Two,{uid2}@{settings.MAIL_DOMAIN}\n"
    job2 = services.start_import(_request_of(admin), "users", "y.csv", text, 1, source=dry)
    ImportRow.objects.create(job=job2, line=2, key=uid2, outcome="pending", sealed_password=sealing.seal(password))
    services.run_import(job2.pk)
    assert verify_cram_md5(password, directory.password_hash(uid2))


def _request_of(client: Client) -> HttpRequest:
    request = RequestFactory().post("/")
    request.user = User.objects.get(username=client.directory_user.uid)
    return request


def test_the_directory_stopping_mid_import_fails_no_row_and_the_retry_goes_on(admin, cleanup_uids, monkeypatch) -> None:
    t = tag()
    uids = [f"down{n:02d}{t}" for n in range(services.BATCH + 10)]
    cleanup_uids.extend(uids)
    text = "uid,name,mail\n" + "".join(f"{uid},Down Test,{uid}@{settings.MAIL_DOMAIN}\n" for uid in uids)
    dry = dry_run(admin, "users", text)
    response = admin.post(f"/bulk/imports/{dry.pk}/import/")
    job = ImportJob.objects.get(source=dry)
    slapd = Slapd()
    batch = services.UserRows.batch

    def stop_after_the_first_batch(self: services.UserRows, rows: list[csvfiles.Row]) -> None:
        batch(self, rows)
        slapd.stop()

    monkeypatch.setattr(services.UserRows, "batch", stop_after_the_first_batch)
    try:
        with pytest.raises(directory.DirectoryUnavailable):
            services.run_import(job.pk)  # the task retries on this
        job.refresh_from_db()
        assert job.state == "running" and job.heartbeat_at is None  # the retry takes it at once
        assert set(outcomes(job).values()) == {"created"} and len(outcomes(job)) == services.BATCH
    finally:
        slapd.start()
    monkeypatch.setattr(services.UserRows, "batch", batch)
    assert response.status_code == 302 and services.run_import(job.pk) == "done"
    assert set(outcomes(job).values()) == {"created"} and len(outcomes(job)) == len(uids)
    assert all(directory.get_user(uid) for uid in uids)
    assert AuditEvent.objects.filter(action="account.create", target__in=uids).count() == len(uids)


def test_the_progress_page_follows_the_worker(admin) -> None:
    user = User.objects.get(username=admin.directory_user.uid)
    job = ImportJob.objects.create(
        kind="aliases", created_by=user, total_rows=400, processed_rows=100, state="running", sealed_content="x"
    )
    page = admin.get(f"/bulk/imports/{job.pk}/").content.decode()
    assert '<progress id="import-progress" max="400" value="100"' in page and "100 of 400 rows done" in page
    assert '<meta http-equiv="refresh"' in page
    ImportJob.objects.filter(pk=job.pk).update(state="done", processed_rows=400)
    assert '<meta http-equiv="refresh"' not in admin.get(f"/bulk/imports/{job.pk}/").content.decode()


def test_the_job_page_costs_the_same_queries_for_one_error_or_five_hundred(admin) -> None:
    user = User.objects.get(username=admin.directory_user.uid)
    counted = []
    for errors in (1, 500):
        job = ImportJob.objects.create(kind="aliases", created_by=user, total_rows=errors, state="done")
        ImportRow.objects.bulk_create(
            ImportRow(job=job, line=n + 2, key=f"a{n}@x", outcome="error", message="owner: no") for n in range(errors)
        )
        with CaptureQueriesContext(connection) as queries:
            page = admin.get(f"/bulk/imports/{job.pk}/").content.decode()
        assert page.count('<td data-label="Line">') == errors
        counted.append(len(queries))
    assert counted[0] == counted[1], counted


def test_an_import_of_another_admin_is_not_found(admin, sign_in) -> None:
    other = sign_in("admin")
    user = User.objects.get(username=other.directory_user.uid)
    job = ImportJob.objects.create(kind="users", dry_run=False, created_by=user, state="done")
    for url in (f"/bulk/imports/{job.pk}/", f"/bulk/imports/{job.pk}/import/", f"/bulk/imports/{job.pk}/passwords/"):
        assert admin.post(url).status_code == 404
    assert other.get(f"/bulk/imports/{job.pk}/").status_code == 200


def test_a_queued_job_that_no_worker_took_is_resumed(admin) -> None:
    user = User.objects.get(username=admin.directory_user.uid)
    job = ImportJob.objects.create(kind="users", created_by=user)
    ImportJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    busy = ImportJob.objects.create(kind="users", created_by=user, state="running", heartbeat_at=timezone.now())
    ImportJob.objects.filter(pk=busy.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert services.jobs_to_resume() == [job.pk]
    with pytest.raises(services.ImportBusy):
        services.run_import(busy.pk)


def test_passwords_and_files_nobody_took_are_deleted_after_a_week(admin) -> None:
    user = User.objects.get(username=admin.directory_user.uid)
    old = ImportJob.objects.create(kind="users", created_by=user, state="done", sealed_content=sealing.seal("x"))
    ImportRow.objects.create(job=old, line=2, key="u", outcome="created", sealed_password=sealing.seal("pw"))
    recent = ImportJob.objects.create(kind="users", created_by=user, state="done", sealed_content=sealing.seal("y"))
    ImportRow.objects.create(job=recent, line=2, key="v", outcome="created", sealed_password=sealing.seal("pw"))
    ImportJob.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=8))
    ImportJob.objects.filter(pk=recent.pk).update(finished_at=timezone.now() - timedelta(days=6))
    assert services.forget_old_secrets() == 2
    assert ImportRow.objects.get(job=old).sealed_password == "" and not ImportJob.objects.get(pk=old.pk).sealed_content
    assert ImportRow.objects.get(job=recent).sealed_password and ImportJob.objects.get(pk=recent.pk).sealed_content


# --- hostile files -----------------------------------------------------------------------------

HEADER = b"address,owner\n"
HOSTILE_FILES = {
    "empty": b"",
    "header only": HEADER,
    "latin-1": HEADER + "caf\xe9@alias.example.org,alice\n".encode("latin-1"),
    "utf-16": "address,owner\nx@alias.example.org,alice\n".encode("utf-16"),
    "nul bytes": HEADER + b"x\x00@alias.example.org,alice\n",
    "unknown column": b"address,owner,password\nx@alias.example.org,alice,secret\n",
    "missing column": b"address\nx@alias.example.org\n",
    "column twice": b"address,owner,owner\nx@alias.example.org,alice,bob\n",
    "duplicate rows": HEADER + b"x@alias.example.org,alice\ny@alias.example.org,alice\nx@alias.example.org,alice\n",
    "duplicate in other case": HEADER + b"x@alias.example.org,alice\nX@Alias.Example.org,alice\n",
    "more cells than columns": HEADER + b"x@alias.example.org,alice,extra\n",
    "unclosed quote": HEADER + b'"x@alias.example.org,alice\n',
    "a field over the limit": HEADER + b"x" * 200_000 + b",alice\n",
    "binary": bytes(range(1, 256)) * 10,
    "formula header": b"=cmd|' /C calc'!A0,owner\n",
}


@pytest.mark.parametrize("name", HOSTILE_FILES)
def test_a_hostile_file_gets_a_clear_error_and_changes_nothing(admin, make_directory_user, name: str) -> None:
    before, jobs = state(), ImportJob.objects.count()
    response = upload(admin, "aliases", HOSTILE_FILES[name])
    assert response.status_code == 200
    page = response.content.decode()
    assert 'class="errors"' in page, page[:3000]
    assert state() == before and ImportJob.objects.count() == jobs


def test_an_oversized_file_is_refused_before_it_is_read(admin, settings) -> None:
    settings.BULK_MAX_BYTES = 1000
    response = upload(admin, "aliases", HEADER + b"x@alias.example.org,alice\n" * 100)
    assert "larger than" in response.content.decode() and not ImportJob.objects.exists()


def test_too_many_rows_are_refused(admin, settings) -> None:
    settings.BULK_MAX_ROWS = 3
    response = upload(admin, "aliases", HEADER + b"".join(b"a%d@alias.example.org,alice\n" % n for n in range(4)))
    assert "more than 3 rows" in response.content.decode() and not ImportJob.objects.exists()


def test_the_messages_name_the_line_and_quote_the_value_short() -> None:
    with pytest.raises(csvfiles.CsvRefused, match=r"^Line 3 repeats the address 'x@a' of line 2\.$"):
        csvfiles.parse("address,owner\nx@a,b\nX@A,c\n", csvfiles.ALIASES, 10)
    with pytest.raises(csvfiles.CsvRefused, match=r"^Line 2 is not UTF-8"):
        csvfiles.decode(b"address,owner\n\xff,b\n")
    with pytest.raises(csvfiles.CsvRefused, match="unknown columns: 'x{60}…'\\. "):
        csvfiles.parse("address,owner,x" + "x" * 100 + "\n", csvfiles.ALIASES, 10)
    # Lines count from the start of a row, also after a quoted line break.
    rows = csvfiles.parse('address,owner,note\na@b,c,"one\ntwo"\n\nd@e,f,\n', csvfiles.ALIASES, 10)
    assert [row.line for row in rows] == [2, 5]


# --- exports -----------------------------------------------------------------------------------


def test_cells_a_spreadsheet_would_run_are_neutralised_and_read_back_as_they_were() -> None:
    for value in ("=1+2", "+49 30", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert csvfiles.safe_cell(value) == "'" + value
    assert csvfiles.safe_cell("plain") == "plain" and csvfiles.safe_cell("a=b") == "a=b"
    text = "".join(csvfiles.csv_lines(("address", "owner", "note"), [("a@b", "c", '=HYPERLINK("x")')]))
    assert text.splitlines()[1] == 'a@b,c,"\'=HYPERLINK(""x"")"'
    assert csvfiles.parse(text, csvfiles.ALIASES, 10)[0].values["note"] == '=HYPERLINK("x")'


def test_the_alias_export_is_neutralised_and_imports_again_as_it_was(admin, alias_domain, make_directory_user) -> None:
    person = make_directory_user()
    owner = User.objects.create(username=person.uid, email=person.mail)
    t = tag()
    Alias.objects.create(owner=owner, local_part=f"f{t}", domain=alias_domain, label="=cmd|' /C calc'!A0")
    Alias.objects.create(
        owner=owner, local_part=f"g{t}", domain=alias_domain, label="@mention", enabled=False, site="shop.example.com"
    )
    response = admin.post("/bulk/export/", {"what": "aliases"})
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="aliases-')
    lines = response.content.decode().splitlines()
    assert lines[0] == "address,owner,site,note,expires_on,enabled"
    assert f"f{t}@{alias_domain.name},{person.uid},,'=cmd|' /C calc'!A0,,yes" in lines
    assert f"g{t}@{alias_domain.name},{person.uid},shop.example.com,'@mention,,no" in lines
    # Imported back where they are: already there, nothing doubled.
    mine = "\n".join([lines[0], *(line for line in lines if t in line)])
    job = dry_run(admin, "aliases", mine)
    assert set(outcomes(job).values()) == {"unchanged"}
    assert AuditEvent.objects.filter(action="bulk.export-aliases").exists()


def test_the_users_export_has_hashes_only_when_asked_marked_and_never_logged(
    admin, make_directory_user, caplog
) -> None:
    person = make_directory_user()
    stored = directory.password_hash(person.uid)
    caplog.set_level(logging.DEBUG)
    plain = admin.post("/bulk/export/", {"what": "users"})
    assert plain.content.decode().splitlines()[0] == "uid,name,mail"
    assert f"{person.uid},{person.cn},{person.mail}" in plain.content.decode()
    assert stored not in plain.content.decode()
    secret = admin.post("/bulk/export/", {"what": "users", "password_hashes": "on"})
    assert 'filename="users-WITH-PASSWORD-HASHES-' in secret["Content-Disposition"]
    assert secret.content.decode().splitlines()[0] == "uid,name,mail,password_equivalent_hash"
    assert f"{person.uid},{person.cn},{person.mail},{stored}" in secret.content.decode()
    event = AuditEvent.objects.filter(action="bulk.export-users").order_by("-pk").first()
    assert "WITH password-equivalent hashes" in event.detail and stored not in event.detail
    assert stored not in caplog.text and stored[10:] not in caplog.text
    # Exported, then imported on a server where they are already: nothing changes.
    mine = "\n".join([secret.content.decode().splitlines()[0], f"{person.uid},{person.cn},{person.mail},{stored}"])
    assert set(outcomes(dry_run(admin, "users", mine)).values()) == {"unchanged"}
    refused = admin.post("/bulk/export/", {"what": "aliases", "password_hashes": "on"})
    assert refused.status_code == 200 and "Only the users export" in refused.content.decode()


def test_imports_and_exports_are_in_the_audit_log(admin, alias_domain, make_directory_user) -> None:
    owner = make_directory_user()
    dry = dry_run(admin, "aliases", f"address,owner\nz{tag()}@{alias_domain.name},{owner.uid}\n")
    actions = set(AuditEvent.objects.filter(target=f"import {dry.pk}").values_list("action", flat=True))
    assert actions == {"bulk.dry-run", "bulk.dry-run-finished"}
    job = apply(admin, dry)
    actions = set(AuditEvent.objects.filter(target=f"import {job.pk}").values_list("action", flat=True))
    assert actions == {"bulk.import", "bulk.import-finished"}
    assert not job.sealed_content and not ImportJob.objects.get(pk=dry.pk).sealed_content


def test_non_admins_cannot_see_or_use_the_import(sign_in) -> None:
    for role in ("end user", "helpdesk"):
        client = sign_in(role)
        assert client.get("/bulk/").status_code == 403
        assert upload(client, "aliases", HEADER + b"x@alias.example.org,alice\n").status_code == 403
        assert client.post("/bulk/export/", {"what": "users", "password_hashes": "on"}).status_code == 403
    assert not ImportJob.objects.exists()
