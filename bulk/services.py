"""CSV import and export workflows.

An import is first a dry run; an admin then imports the same file. The worker runs a job row by
row (run_import): each row is checked by the web pages' forms and applied on its own, whole or
not at all, and its outcome is recorded with it; a row that fails does not stop the others.
Running a job twice, or importing a file again, applies nothing twice: a row already recorded is
skipped, and a user or alias that is already there as the row describes it is "already there".
"""

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Count, F
from django.http import HttpRequest
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts import administration, directory
from accounts.forms import UNAVAILABLE
from aliases.forms import AliasCreateForm
from aliases.models import Alias, Domain
from aliases.services import AliasRefused, checks_read_ahead, create_alias, set_alias_enabled, usable_domains
from audit.models import record_event
from bulk import csvfiles
from bulk.forms import AliasRowForm, UserRowForm, alias_form
from bulk.models import ImportJob, ImportRow
from mfa import sealing
from postfix import publication

BATCH = 50  # rows per transaction (each row in a savepoint of its own); progress is written with each
KEEP_SECRETS = timedelta(days=7)
STALE_AFTER = timedelta(minutes=2)  # a running job without a heartbeat this long is taken over
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/l/I
# Form fields as the file's columns call them.
COLUMN_OF_FIELD = {"local_part": "address", "domain": "address", "label": "note", "new_password": "password"}


class ImportBusy(Exception):
    """Another worker holds the job."""


def generated_password() -> str:
    """Four groups of five: 117 bits, read aloud or typed from paper without doubt."""
    return "-".join("".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(5)) for _ in range(4))


# --- starting and following a job -------------------------------------------------------------


def start_import(
    request: HttpRequest, kind: str, filename: str, text: str, rows: int, *, source: ImportJob | None = None
) -> ImportJob:
    """A dry run of an uploaded file (already parsed without refusal), or, with `source`, the
    import of that dry run's file. The caller queues tasks.run_import (the job is committed)."""
    assert isinstance(request.user, User)
    with transaction.atomic():
        job = ImportJob.objects.create(
            kind=kind,
            dry_run=source is None,
            created_by=request.user,
            source=source,
            filename="".join(c for c in filename if c.isprintable())[:255],
            sealed_content=sealing.seal(text),
            total_rows=rows,
        )
        action = "bulk.dry-run" if job.dry_run else "bulk.import"
        record_event(
            action, request=request, target=f"import {job.pk}", detail=f"{kind}, {rows} rows, file {job.filename}"
        )
    return job


def jobs_to_resume(now: datetime | None = None) -> list[int]:
    """Jobs no worker is running: never started (the broker was down) or left by a dead worker."""
    stale = (now or timezone.now()) - STALE_AFTER
    unfinished = ImportJob.objects.exclude(state=ImportJob.State.DONE).filter(created_at__lt=stale)
    return [pk for pk, beat in unfinished.values_list("pk", "heartbeat_at") if beat is None or beat < stale]


def forget_old_secrets(now: datetime | None = None) -> int:
    """Initial passwords nobody downloaded, and files of dry runs nobody imported, are deleted
    KEEP_SECRETS after the job finished (they may hold passwords or hashes). Returns how many."""
    before = (now or timezone.now()) - KEEP_SECRETS
    with transaction.atomic():
        rows = ImportRow.objects.filter(job__finished_at__lt=before).exclude(sealed_password="")
        forgotten = rows.update(sealed_password="")
        files = ImportJob.objects.filter(finished_at__lt=before).exclude(sealed_content="")
        forgotten += files.update(sealed_content="")
    return forgotten


def _claim(job_id: int) -> ImportJob | None:
    """The job for this worker, or None when it is finished, gone, or another worker holds it."""
    now = timezone.now()
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.state == ImportJob.State.DONE:
            return None
        if job.state == ImportJob.State.RUNNING and job.heartbeat_at and job.heartbeat_at > now - STALE_AFTER:
            raise ImportBusy(f"import {job_id} is running on another worker")
        job.state, job.heartbeat_at = ImportJob.State.RUNNING, now
        job.save(update_fields=["state", "heartbeat_at"])
    return job


def outcome_counts(job: ImportJob) -> dict[str, int]:
    counts = dict(job.rows.values_list("outcome").annotate(n=Count("id")).values_list("outcome", "n"))
    return {outcome: counts.get(outcome, 0) for outcome in ImportRow.Outcome.values}


def _finish(job: ImportJob) -> None:
    counts = outcome_counts(job)
    summary = ", ".join(f"{n} {ImportRow.Outcome(outcome).label}" for outcome, n in counts.items() if n)
    with transaction.atomic():
        job.state, job.finished_at = ImportJob.State.DONE, timezone.now()
        job.processed_rows = job.total_rows
        fields = ["state", "finished_at", "processed_rows"]
        if not job.dry_run:
            # Imported: the file (which may hold password hashes) is no longer needed anywhere.
            job.sealed_content = ""
            fields.append("sealed_content")
            if job.source_id is not None:
                ImportJob.objects.filter(pk=job.source_id).update(sealed_content="")
        job.save(update_fields=fields)
        action = "bulk.dry-run-finished" if job.dry_run else "bulk.import-finished"
        record_event(action, actor=job.created_by, target=f"import {job.pk}", detail=f"{job.kind}: {summary}")


def run_import(job_id: int) -> str:
    """The worker's part: every row not yet recorded, in file order, in batches. Safe to run
    twice, late or after a crash half-way (see the module's description)."""
    job = _claim(job_id)
    if job is None:
        return "nothing to do"
    rows = csvfiles.parse(sealing.unseal(job.sealed_content), csvfiles.LAYOUTS[job.kind], settings.BULK_MAX_ROWS)
    recorded = dict(job.rows.values_list("line", "outcome"))
    todo = [row for row in rows if recorded.get(row.line) in (None, ImportRow.Outcome.PENDING)]
    handle = UserRows(job) if job.kind == ImportJob.Kind.USERS else AliasRows(job)
    try:
        with directory.one_connection():
            for start in range(0, len(todo), BATCH):
                handle.batch(todo[start : start + BATCH])
    except Exception:
        # Let the retry (or another worker) take the job at once instead of waiting out the lease.
        ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=None)
        raise
    _finish(job)
    return "done"


class Outcomes:
    """The outcomes of a batch, written together inside the transaction that applies them
    (replacing a row's earlier "being created"), with the job's progress and heartbeat: no
    write of its own, and the count shown is that of the outcomes committed."""

    def __init__(self, job: ImportJob) -> None:
        self.job = job
        self.rows: dict[int, ImportRow] = {}

    def add(self, row: csvfiles.Row, key: str, outcome: str, message: str = "", password: str = "") -> None:
        self.rows[row.line] = ImportRow(
            job=self.job,
            line=row.line,
            key=key[:320],
            outcome=outcome,
            message=message,
            sealed_password=sealing.seal(password) if password else "",
        )

    def write(self) -> None:
        ImportRow.objects.filter(job=self.job, line__in=list(self.rows)).delete()
        ImportRow.objects.bulk_create(self.rows.values())
        # Each line gets its final outcome once (a rerun skips lines that have one).
        final = sum(row.outcome != ImportRow.Outcome.PENDING for row in self.rows.values())
        ImportJob.objects.filter(pk=self.job.pk).update(
            processed_rows=F("processed_rows") + final, heartbeat_at=timezone.now()
        )
        self.rows = {}


def _errors(*forms: Any) -> str:
    """The forms' errors as one line per problem, named by the file's columns."""
    messages: list[str] = []
    for form in forms:
        for field, errors in form.errors.items():
            column = "" if field == "__all__" else COLUMN_OF_FIELD.get(field, field)
            messages.extend(f"{column}: {error}" if column else str(error) for error in errors)
    if any(UNAVAILABLE in message for message in messages):
        # Not the row's fault: the task is retried and goes on from this row.
        raise directory.DirectoryUnavailable("the directory stopped answering during an import")
    return "\n".join(dict.fromkeys(messages))


@dataclass
class Outcome:
    row: csvfiles.Row
    key: str
    outcome: str
    message: str = ""


# --- users -----------------------------------------------------------------------------------


@dataclass
class NewUser:
    row: csvfiles.Row
    data: dict[str, str]
    password: str  # generated; "" when the row gives a hash


class UserRows:
    """A batch: the rows are checked (directory reads), the users to create recorded as pending
    with their passwords (one transaction), created in the directory one add each, and their
    outcomes and audit events recorded (one transaction). A worker dying in between leaves
    pending rows, which the next run finds in the directory or creates."""

    def __init__(self, job: ImportJob) -> None:
        self.job = job
        pending = job.rows.filter(outcome=ImportRow.Outcome.PENDING)
        self.passwords = {
            line: sealing.unseal(sealed) if sealed else ""
            for line, sealed in pending.values_list("line", "sealed_password")
        }

    def batch(self, rows: list[csvfiles.Row]) -> None:
        job, outcomes = self.job, Outcomes(self.job)
        done: list[Outcome] = []
        created: list[NewUser] = []
        new: list[NewUser] = []
        uids = [row.values["uid"].strip() for row in rows]
        with directory.read_ahead(uids, [row.values["mail"].strip() for row in rows]):
            # One directory search for the batch's uids and addresses, read now, answers the checks.
            checks = [self._check(row) for row in rows]
        for checked in checks:
            if isinstance(checked, Outcome):
                done.append(checked)
            elif checked.row.line in self.passwords and checked.data.get("existing"):
                created.append(checked)
            else:
                new.append(checked)
        with transaction.atomic():
            for outcome in done:
                outcomes.add(outcome.row, outcome.key, outcome.outcome, outcome.message)
            for user in new:
                if job.dry_run:
                    outcomes.add(user.row, user.data["uid"], ImportRow.Outcome.VALID)
                else:
                    # Before the directory write: were the worker to die after it, the next run
                    # finds the entry and still has the password to hand over.
                    outcomes.add(user.row, user.data["uid"], ImportRow.Outcome.PENDING, password=user.password)
            outcomes.write()
        if job.dry_run:
            return
        for user in new:
            data = user.data
            try:
                administration.add_mail_user(
                    data["uid"],
                    data["name"],
                    data["mail"],
                    user.password or None,
                    hashed_password=data["password_equivalent_hash"] or None,
                )
            except directory.DirectoryUnavailable:
                raise
            except directory.DirectoryError as exc:
                message = f"The directory refused the new user: {exc}"
                outcomes.add(user.row, data["uid"], ImportRow.Outcome.ERROR, message)
                continue
            created.append(user)
        with transaction.atomic():
            for user in created:
                uid, mail = user.data["uid"], user.data["mail"]
                detail = f"; CSV import {job.pk}, line {user.row.line}"
                administration.record_mail_user_created(uid, mail, None, actor=job.created_by, detail=detail)
                message = f"mailbox {mail}" + ("" if user.password else ", password as given")
                outcomes.add(user.row, uid, ImportRow.Outcome.CREATED, message, password=user.password)
            outcomes.write()

    def _check(self, row: csvfiles.Row) -> Outcome | NewUser:
        values = row.values
        uid, mail = values["uid"].strip(), values["mail"].strip().lower()
        if row.line in self.passwords and self._already_there(uid, mail):
            # Created by an earlier run that stopped before recording it.
            return NewUser(row, {"uid": uid, "mail": mail, "existing": "yes"}, self.passwords[row.line])
        form = UserRowForm(values, self.passwords.get(row.line) or generated_password())
        if not form.is_valid():
            # A taken uid is asked about only then: most rows are new users.
            if "uid" in form.errors and self._already_there(uid, mail):
                return Outcome(row, uid, ImportRow.Outcome.UNCHANGED, "This uid and address are already there.")
            return Outcome(row, uid, ImportRow.Outcome.ERROR, _errors(form))
        data = form.cleaned_data
        password = "" if data["password_equivalent_hash"] else data["new_password"]
        return NewUser(row, data, password)

    @staticmethod
    def _already_there(uid: str, mail: str) -> bool:
        existing = directory.get_user(uid) if directory.UID_PATTERN.fullmatch(uid) else None
        return existing is not None and existing.mail == mail


# --- aliases ---------------------------------------------------------------------------------


@dataclass
class NewAlias:
    row: csvfiles.Row
    owner: User
    domain: Domain
    form: AliasCreateForm
    enabled: bool


class AliasRows:
    """A batch: each row checked by the alias forms (directory reads, outside any transaction),
    then all applied in one transaction, each row in a savepoint of its own (whole or not at
    all), its outcome recorded with it, and one map publication request for the batch's rows.
    A dry run takes the batch's steps and rolls them back."""

    def __init__(self, job: ImportJob) -> None:
        self.job = job
        # Read once per run: the owners' user rows and the domains they may use, and the domains
        # by name. Whether an owner is in the directory is read for each batch.
        self.owners: dict[str, tuple[User, set[int]]] = {}
        self.domains = {domain.name: domain for domain in Domain.objects.all()}
        self.already: set[tuple[str, str, str]] = set()

    def _person(self, uid: str) -> tuple[User, set[int]] | None:
        person = directory.get_user(uid)
        if person is None:
            return None
        if uid not in self.owners:
            # A person who never signed in has no row yet (the row is a cache of the directory).
            owner, _ = User.objects.get_or_create(username=uid, defaults={"email": person.mail})
            self.owners[uid] = (owner, set(usable_domains(owner).values_list("pk", flat=True)))
        return self.owners[uid]

    def batch(self, rows: list[csvfiles.Row]) -> None:
        job, outcomes = self.job, Outcomes(self.job)
        addresses = [row.values["address"].strip().lower() for row in rows]
        # The forms' questions about this batch's owners and addresses are answered from one
        # directory search and a few queries, read now (not kept for the next batch); one query
        # finds the rows already there. create_alias asks the database again when it applies a row.
        self.already = set(
            Alias.objects.filter(
                local_part__in={address.rpartition("@")[0] for address in addresses},
                domain__name__in={address.rpartition("@")[2] for address in addresses},
            ).values_list("local_part", "domain__name", "owner__username")
        )
        uids = {row.values["owner"].strip() for row in rows}
        with directory.read_ahead(uids, addresses):
            with checks_read_ahead(addresses):
                checked = [self._check(row) for row in rows]
        with transaction.atomic():
            with transaction.atomic():
                # The rows' publication requests become one, committed with the rows or not at all.
                with publication.one_request(f"CSV import {job.pk}: aliases"):
                    for item in checked:
                        if isinstance(item, Outcome):
                            outcomes.add(item.row, item.key, item.outcome, item.message)
                        else:
                            self._apply(item, outcomes)
                if job.dry_run:
                    # The dry run takes every step of the import, then takes them back.
                    transaction.set_rollback(True)
            outcomes.write()

    def _check(self, row: csvfiles.Row) -> Outcome | NewAlias:
        values = row.values
        address = values["address"].strip().lower()
        extras = AliasRowForm(values)
        if not extras.is_valid():
            return Outcome(row, address, ImportRow.Outcome.ERROR, _errors(extras))
        uid = extras.cleaned_data["owner"].strip()
        person = self._person(uid) if directory.UID_PATTERN.fullmatch(uid) else None
        if person is None:
            return Outcome(row, address, ImportRow.Outcome.ERROR, f"owner: There is no user {csvfiles.shown(uid)}.")
        owner, usable = person
        local_part, _, domain_name = address.rpartition("@")
        if (local_part, domain_name, uid) in self.already:
            return Outcome(row, address, ImportRow.Outcome.UNCHANGED, f"Already an alias of {uid}.")
        domain = self.domains.get(domain_name)
        if domain is None or domain.pk not in usable:
            message = f"address: {csvfiles.shown(domain_name)} is not an alias domain here"
            return Outcome(row, address, ImportRow.Outcome.ERROR, message + f" (nor a catch-all domain of {uid}).")
        form = alias_form(owner, domain, values)
        if not form.is_valid():
            return Outcome(row, address, ImportRow.Outcome.ERROR, _errors(form))
        return NewAlias(row, owner, domain, form, extras.cleaned_data["enabled"])

    def _apply(self, item: NewAlias, outcomes: Outcomes) -> None:
        job, form = self.job, item.form
        try:
            with transaction.atomic():
                alias = create_alias(
                    None,
                    item.owner,
                    local_part=form.chosen_local_part,
                    domain=item.domain,
                    kind=form.kind,
                    site=form.remembered_site,
                    label=form.cleaned_data["label"],
                    expires_at=form.expires_at,
                    actor=job.created_by,
                )
                if not item.enabled:
                    set_alias_enabled(None, alias, False, actor=job.created_by)
        except (AliasRefused, IntegrityError) as exc:
            outcomes.add(item.row, alias_address(item), ImportRow.Outcome.ERROR, str(exc) or "This address is taken.")
            return
        outcome = ImportRow.Outcome.VALID if job.dry_run else ImportRow.Outcome.CREATED
        outcomes.add(item.row, alias.address, outcome, f"for {item.owner.get_username()}")


def alias_address(item: NewAlias) -> str:
    return f"{item.form.chosen_local_part}@{item.domain.name}"


# --- handing over the initial passwords ------------------------------------------------------


@sensitive_variables()
def hand_over_passwords(request: HttpRequest, job: ImportJob) -> list[tuple[str, str]] | None:
    """(uid, password) of every user the import created with a generated password, once: the
    sealed copies are removed in the same transaction. None when they were handed over before."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        if job.passwords_handed_over_at is not None:
            return None
        rows = job.rows.filter(outcome=ImportRow.Outcome.CREATED).exclude(sealed_password="")
        passwords = [(row.key, sealing.unseal(row.sealed_password)) for row in rows]
        rows.update(sealed_password="")
        job.passwords_handed_over_at = timezone.now()
        job.save(update_fields=["passwords_handed_over_at"])
        record_event(
            "bulk.passwords-handed-over", request=request, target=f"import {job.pk}", detail=f"{len(passwords)} users"
        )
    return passwords


# --- exports ---------------------------------------------------------------------------------


@sensitive_variables()
def export_users(request: HttpRequest, with_hashes: bool) -> Iterator[str]:
    """The users CSV (the import's format), read from the directory before the first line."""
    people = sorted(directory.iter_users(), key=lambda person: person.uid)
    hashes = directory.password_hashes() if with_hashes else {}
    detail = f"{len(people)} users" + (", WITH password-equivalent hashes" if with_hashes else "")
    record_event("bulk.export-users", request=request, detail=detail)
    header = csvfiles.USERS.columns if with_hashes else csvfiles.USERS.columns[:-1]
    rows = ([p.uid, p.cn, p.mail, hashes.get(p.uid, "")] if with_hashes else [p.uid, p.cn, p.mail] for p in people)
    return csvfiles.csv_lines(header, rows)


def export_aliases(request: HttpRequest) -> Iterator[str]:
    aliases = Alias.objects.select_related("domain", "owner").order_by("domain__name", "local_part")
    record_event("bulk.export-aliases", request=request, detail=f"{aliases.count()} aliases")

    def rows() -> Iterator[list[str]]:
        for alias in aliases.iterator(chunk_size=2000):
            expires = timezone.localtime(alias.expires_at).date().isoformat() if alias.expires_at else ""
            enabled = "yes" if alias.enabled else "no"
            yield [alias.address, alias.owner.get_username(), alias.site, alias.label, expires, enabled]

    return csvfiles.csv_lines(csvfiles.ALIASES.columns, rows())
