"""Sender suspension: an admin bars a user from sending mail, with a reason and an optional end.

The database row (SenderSuspension) is the truth; the LDAP sender-block flag (read live by
Postfix's `check_sender_access ldap:`) and the hash: sender_access map (every address the
user may send as) follow it. LDAP is written first, outside any transaction: if slapd
refuses, nothing is recorded. If the database then fails, the flag is put back, and the
periodic sweep (tasks.sweep_suspensions) re-applies the database's truth to LDAP anyway.
"""

import logging
from collections.abc import Mapping
from datetime import datetime

from celery import current_app
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, OperationalError, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts import directory
from accounts.models import SenderSuspension
from audit.models import record_event
from mailadmin.dates import format_datetime
from notices import services as notices
from postfix.publication import request_publication

log = logging.getLogger(__name__)


class SuspensionError(Exception):
    """A suspension or reinstatement that did not happen; the message is for the admin."""


class SuspensionBusy(SuspensionError):
    """The database could not take the change now (locked or busy): nothing was changed."""


BUSY = "The database is busy, so nothing was changed. Try again in a moment."


def is_suspended(user: User | str) -> bool:
    uid = user if isinstance(user, str) else user.get_username()
    return SenderSuspension.objects.active().filter(uid=uid).exists()


def active_suspension(uid: str) -> SenderSuspension | None:
    return SenderSuspension.objects.active().filter(uid=uid).first()


def suspension_context(request: HttpRequest) -> dict[str, object]:
    """Template context: the signed-in user's own active suspension, for the banner."""
    if not request.user.is_authenticated:
        return {}
    # The request's user comes with whether they are suspended (accounts.backends): no query
    # when they are not; anyone else is asked.
    suspended = getattr(request.user, "sending_suspended", True)
    return {
        "own_suspension": active_suspension(request.user.get_username()) if suspended else None,
        "abuse_contact": settings.ABUSE_CONTACT,
    }


def reject_action() -> str:
    return f"REJECT {settings.SUSPENSION_REJECT_TEXT}"


def sender_access_entries(current_mail: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(address, access action) pairs for the sender_access table: every mailbox address of a
    suspended user (their aliases are added by aliases/postfix_feature.py).
    `current_mail` (uid -> mailbox, as the directory has it now) adds the address a user's
    mailbox got after the suspension was recorded; the recorded one stays refused too."""
    active = SenderSuspension.objects.active()
    action = reject_action()
    addresses = {suspension.mail.lower() for suspension in active if suspension.mail}
    if current_mail:
        addresses.update(current_mail[s.uid].lower() for s in active if current_mail.get(s.uid))
    return [(address, action) for address in sorted(addresses)]


SYSTEM = "system"


def suspend(
    uid: str,
    reason: str,
    until: datetime | None,
    actor: User | None,
    request: HttpRequest | None = None,
    *,
    notify: bool = False,
) -> SenderSuspension:
    """Suspend `uid` (actor None: the system did it, e.g. an outbound limit). With `notify` the
    person and the admins are told by mail once the suspension is recorded."""
    actor_name = actor.get_username() if actor is not None else SYSTEM
    if uid == actor_name:
        raise SuspensionError("You cannot suspend your own account.")
    if until is not None and until <= timezone.now():
        raise SuspensionError("The end of the suspension must be in the future.")
    if is_suspended(uid):
        raise SuspensionError(f"{uid} is already suspended.")
    try:
        person = directory.get_user(uid)
        if person is None:
            raise SuspensionError(f"There is no user {uid} in the directory.")
        directory.set_sender_blocked(uid, True)
    except directory.DirectoryUnavailable:
        raise SuspensionError(
            "The directory is not answering, so nothing was changed: the user is not suspended. Try again shortly."
        ) from None
    except directory.DirectoryError as exc:
        raise SuspensionError(f"The directory refused the change, nothing was changed: {exc}") from None
    try:
        with transaction.atomic():
            suspension = SenderSuspension.objects.create(
                uid=uid,
                mail=person.mail,
                reason=reason,
                until=until,
                created_by=actor,
                created_by_name=actor_name,
            )
            detail = f"until {format_datetime(until, zone=True)}" if until else "until reinstated"
            if actor is None:
                detail = f"{detail}; {reason}"
            record_event("suspension.suspend", request=request, actor=actor, target=uid, detail=detail)
            request_publication(f"suspend {uid}")
            if until is not None:
                transaction.on_commit(lambda: _schedule_lift(suspension.pk, until))
    except IntegrityError:
        # Someone else suspended them a moment ago: the flag we set is right.
        raise SuspensionError(f"{uid} is already suspended.") from None
    except OperationalError:
        _put_back_flag(uid, blocked=False)
        raise SuspensionBusy(BUSY) from None
    except Exception:
        _put_back_flag(uid, blocked=False)
        raise
    if notify:
        _tell(suspension, person.mail)
    return suspension


def _tell(suspension: SenderSuspension, mail: str) -> None:
    """The person learns why and until when, and whom to ask; every admin gets the figures."""
    until = (
        f"until {format_datetime(suspension.until, zone=True)}"
        if suspension.until
        else "until an administrator lifts it"
    )
    by = "automatically by the mail system" if suspension.created_by_name == SYSTEM else "by an administrator"
    if mail:
        notices.queue(
            mail,
            "Sending mail from your account is suspended",
            f"Sending mail from your account ({suspension.uid}) was suspended {by}, {until}.\n\n"
            f"Reason: {suspension.reason}\n\n"
            f"Mail to you is still delivered. If you did not send this mail, your password may be\n"
            f"known to someone else: change it, and contact {settings.ABUSE_CONTACT}.\n",
            "suspension",
        )
    for address in _admin_addresses():
        notices.queue(
            address,
            f"Sending suspended for {suspension.uid}",
            f"Sending mail was suspended for {suspension.uid} ({mail or 'no mailbox'}) {by}, {until}.\n\n"
            f"Reason: {suspension.reason}\n\n"
            f"Lift it on the user's page in mailadmin once the account is safe again.\n",
            "suspension-admin",
        )


def _admin_addresses() -> list[str]:
    try:
        admins = directory.group_member_uids(settings.LDAP_ADMIN_GROUP_DN)
        people = [directory.get_user(uid) for uid in sorted(admins)]
    except directory.DirectoryError:
        log.warning("could not read the admins from the directory; no admin notice sent")
        return []
    return sorted({person.mail for person in people if person is not None and person.mail})


def reinstate(uid: str, actor: User | None, request: HttpRequest | None = None, now: datetime | None = None) -> bool:
    """Lift the user's active suspension (actor None: lifted by the system at its end).
    Returns False when there was nothing to lift."""
    if active_suspension(uid) is None:
        return False
    try:
        directory.set_sender_blocked(uid, False)
    except directory.DirectoryUnavailable:
        raise SuspensionError(
            "The directory is not answering, so nothing was changed: the user is still suspended. Try again shortly."
        ) from None
    except directory.DirectoryError as exc:
        raise SuspensionError(f"The directory refused the change, nothing was changed: {exc}") from None
    try:
        with transaction.atomic():
            lifted = (
                SenderSuspension.objects.active()
                .filter(uid=uid)
                .update(
                    lifted_at=now or timezone.now(),
                    lifted_by=actor,
                    lifted_by_name=actor.get_username() if actor else "",
                )
            )
            if lifted:
                action = "suspension.reinstate" if actor else "suspension.expire"
                record_event(action, request=request, actor=actor, target=uid)
                request_publication(f"reinstate {uid}")
    except OperationalError:
        _put_back_flag(uid, blocked=True)
        raise SuspensionBusy(BUSY) from None
    except Exception:
        _put_back_flag(uid, blocked=True)
        raise
    return bool(lifted)


def _put_back_flag(uid: str, blocked: bool) -> None:
    try:
        directory.set_sender_blocked(uid, blocked)
    except directory.DirectoryError:
        log.exception("could not put back the sender-block flag of %s; the sweep will", uid)


def _schedule_lift(suspension_id: int, until: datetime) -> None:
    # By name, as postfix/publication.py does: accounts.tasks imports this module.
    try:
        current_app.send_task("accounts.tasks.lift_suspension", args=[suspension_id], eta=until)
    except Exception:
        # The broker is down: the periodic sweep lifts it at most one interval late.
        log.warning("could not schedule the end of suspension %s; the sweep will lift it", suspension_id)


def lift_expired(now: datetime | None = None) -> list[str]:
    """Lift every suspension whose end has passed; returns the uids lifted. Those whose
    flag cannot be cleared (slapd down) stay suspended until the next run."""
    now = now or timezone.now()
    lifted: list[str] = []
    for uid in SenderSuspension.objects.active().filter(until__lte=now).values_list("uid", flat=True):
        try:
            if reinstate(uid, actor=None, now=now):
                lifted.append(uid)
        except SuspensionError:
            log.warning("suspension of %s ended but the directory is not answering; retrying later", uid)
    return lifted


def reconcile() -> tuple[list[str], list[str]]:
    """Make the LDAP flag match the database: (uids blocked, uids unblocked)."""
    suspended = set(SenderSuspension.objects.active().values_list("uid", flat=True))
    flagged = {user.uid for user in directory.iter_users(f"({settings.LDAP_SENDER_BLOCK_ATTR}=TRUE)")}
    blocked = sorted(suspended - flagged)
    unblocked = sorted(flagged - suspended)
    for uid in blocked:
        try:
            directory.set_sender_blocked(uid, True)
        except directory.DirectoryError as exc:
            if isinstance(exc, directory.DirectoryUnavailable):
                raise
            log.warning("suspended user %s is not in the directory: %s", uid, exc)
    for uid in unblocked:
        if not is_suspended(uid):  # suspend() writes LDAP before its row commits
            directory.set_sender_blocked(uid, False)
    if blocked or unblocked:
        log.warning("sender-block flags re-applied from the database: blocked %s, unblocked %s", blocked, unblocked)
    return blocked, unblocked
