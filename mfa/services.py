"""Second-factor workflows: what a person has, enrolling, checking a code or a passkey,
recovery codes, removing factors, and an admin's reset with its notice by mail."""

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import models, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts import directory
from accounts.roles import role_of
from audit.models import record_event
from mailadmin import outgoing_mail
from mailadmin.dates import format_datetime
from mfa import passkeys, sealing, throttle, totp
from mfa.forms import RECOVERY_ALPHABET, RECOVERY_LENGTH
from mfa.models import Passkey, RecoveryCode, ResetNotice, TotpDevice

log = logging.getLogger(__name__)

RECOVERY_CODE_COUNT = 10
TOTP_ENROLMENT_KEY = "mfa_totp_enrolment"
TOTP_ENROLMENT_SECONDS = 900
NOTICE_RETRY_DAYS = 7


class CodeRefused(Exception):
    """A code that does not let the person in; the message says why, for them."""


class LastFactor(Exception):
    """Removing this would leave a person whose role needs a second factor without one."""


@dataclass(frozen=True)
class Factors:
    totp: TotpDevice | None
    passkeys: list[Passkey]
    recovery_codes_left: int

    @property
    def any(self) -> bool:
        return self.totp is not None or bool(self.passkeys)

    def describe(self) -> str:
        kinds = (["authenticator app"] if self.totp else []) + [f"passkey “{p.name}”" for p in self.passkeys]
        return ", ".join(kinds) or "none"


def factors_of(user: User) -> Factors:
    return Factors(
        totp=TotpDevice.objects.filter(user=user).first(),
        passkeys=list(Passkey.objects.filter(user=user)),
        recovery_codes_left=RecoveryCode.objects.filter(user=user, used_at__isnull=True).count(),
    )


def has_second_factor(user: User) -> bool:
    return TotpDevice.objects.filter(user=user).exists() or Passkey.objects.filter(user=user).exists()


def required_for(user: User) -> bool:
    """The policy: this person's role (from LDAP, as mirrored now) must have a second factor."""
    role = role_of(user)
    return role is not None and role.value in settings.SECOND_FACTOR_ROLES


# --- TOTP ---------------------------------------------------------------------------------


def totp_enrolment_secret(request: HttpRequest) -> str:
    """The secret offered on the enrolment page: the same one until it is confirmed or old, so
    reloading the page does not invalidate what the app has just scanned."""
    stored = request.session.get(TOTP_ENROLMENT_KEY)
    now = timezone.now().timestamp()
    if isinstance(stored, dict) and 0 <= now - float(stored.get("at", 0)) <= TOTP_ENROLMENT_SECONDS:
        try:
            return sealing.unseal(str(stored.get("secret", "")))
        except sealing.SealBroken:
            pass
    secret = totp.new_secret()
    request.session[TOTP_ENROLMENT_KEY] = {"secret": sealing.seal(secret), "at": now}
    return secret


def confirm_totp(request: HttpRequest, user: User, code: str) -> TotpDevice:
    """The first code from the app proves it holds the secret shown; only then is it kept."""
    secret = totp_enrolment_secret(request)
    step = totp.matching_step(secret, code)
    if step is None:
        raise CodeRefused("That code does not match. Check the time on your phone and enter the code shown now.")
    with transaction.atomic():
        if TotpDevice.objects.select_for_update().filter(user=user).exists():
            raise CodeRefused("You already have an authenticator app. Remove it first to set up another.")
        # The confirming code is spent: it cannot sign anyone in afterwards.
        device = TotpDevice.objects.create(user=user, sealed_secret=sealing.seal(secret), last_step=step)
        record_event(
            "second-factor.added", request=request, actor=user, target=user.get_username(), detail="authenticator app"
        )
    request.session.pop(TOTP_ENROLMENT_KEY, None)
    return device


def _accept_totp(device: TotpDevice, code: str) -> bool:
    try:
        secret = sealing.unseal(device.sealed_secret)
    except sealing.SealBroken:
        log.error("the TOTP secret of user %s cannot be opened with SECRET_KEY or its fallbacks", device.user_id)
        return False
    step = totp.matching_step(secret, code)
    if step is None:
        return False
    # Only a step later than the last accepted one: a code is never accepted twice, nor an
    # older code once a newer one was used. One UPDATE, so two requests cannot both win.
    fields: dict[str, object] = {"last_step": step, "last_used_at": timezone.now()}
    if not sealing.sealed_under_current_key(device.sealed_secret):
        fields["sealed_secret"] = sealing.seal(secret)
    return TotpDevice.objects.filter(pk=device.pk, last_step__lt=step).update(**fields) == 1


# --- recovery codes -------------------------------------------------------------------------


def _digest(code: str) -> str:
    return hashlib.sha256(f"mailadmin-recovery:{code}".encode()).hexdigest()


def formatted(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def new_recovery_codes(request: HttpRequest | None, user: User) -> list[str]:
    """Ten new codes, shown once; the old ones stop working."""
    codes = ["".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH)) for _ in range(10)]
    with transaction.atomic():
        RecoveryCode.objects.filter(user=user).delete()
        RecoveryCode.objects.bulk_create(RecoveryCode(user=user, digest=_digest(code)) for code in codes)
        record_event("second-factor.recovery-codes", request=request, actor=user, target=user.get_username())
    return [formatted(code) for code in codes]


def _accept_recovery_code(user: User, code: str) -> bool:
    return (
        RecoveryCode.objects.filter(user=user, digest=_digest(code), used_at__isnull=True).update(
            used_at=timezone.now()
        )
        == 1
    )


# --- checking a second factor ---------------------------------------------------------------


def check_code(request: HttpRequest, user: User, code: str, kind: str) -> str:
    """A TOTP or recovery code (kind as CodeForm found it): the method to record, or CodeRefused."""
    username = user.get_username()
    slot = throttle.claim(username)
    if slot is None:
        record_event("second-factor.refused", request=request, actor=user, target=username, detail="throttled")
        raise CodeRefused("Too many wrong codes. Wait a quarter of an hour and try again.")
    if kind == "totp":
        device = TotpDevice.objects.filter(user=user).first()
        accepted = device is not None and _accept_totp(device, code)
    else:
        accepted = has_second_factor(user) and _accept_recovery_code(user, code)
    if not accepted:
        throttle.failed(slot)
        record_event("second-factor.refused", request=request, actor=user, target=username, detail=f"wrong {kind}")
        if kind == "totp":
            raise CodeRefused("That code is not right, or was used already. Wait for the next one and try again.")
        raise CodeRefused("That recovery code is not right, or was used already.")
    throttle.succeeded(username)
    return kind


def _stored(passkey: Passkey) -> passkeys.StoredPasskey:
    return passkeys.StoredPasskey(
        credential_id=passkey.credential_id,
        public_key=bytes(passkey.public_key),
        sign_count=passkey.sign_count,
        transports=[t for t in passkey.transports.split(",") if t],
    )


def passkey_options(request: HttpRequest, user: User) -> str | None:
    """The browser's options for signing with one of this person's passkeys (None: they have none)."""
    own = list(Passkey.objects.filter(user=user))
    return passkeys.authentication_options(request, [_stored(p) for p in own]) if own else None


def check_passkey(request: HttpRequest, user: User, credential_json: str) -> None:
    """PasskeyRefused unless the browser signed this session's challenge with a passkey of this person."""
    credential_id = passkeys.credential_id_of(credential_json)
    passkey = Passkey.objects.filter(user=user, credential_id=credential_id).first()
    if passkey is None:
        request.session.pop(passkeys.CHALLENGE_KEY, None)
        raise passkeys.PasskeyRefused("This passkey is not registered for your account.")
    try:
        counter = passkeys.verify_authentication(request, credential_json, _stored(passkey))
    except passkeys.PasskeyRefused:
        record_event("second-factor.refused", request=request, actor=user, target=user.get_username(), detail="passkey")
        raise
    Passkey.objects.filter(pk=passkey.pk).update(sign_count=counter, last_used_at=timezone.now())


def new_passkey_options(request: HttpRequest, user: User) -> str:
    return passkeys.registration_options(request, user, [_stored(p) for p in Passkey.objects.filter(user=user)])


def add_passkey(request: HttpRequest, user: User, name: str, credential_json: str) -> Passkey:
    new = passkeys.verify_registration(request, credential_json)
    with transaction.atomic():
        if Passkey.objects.filter(credential_id=new.credential_id).exists():
            raise passkeys.PasskeyRefused("This passkey is registered already.")
        passkey = Passkey.objects.create(
            user=user,
            name=name,
            credential_id=new.credential_id,
            public_key=new.public_key,
            sign_count=new.sign_count,
            transports=",".join(new.transports),
        )
        record_event(
            "second-factor.added", request=request, actor=user, target=user.get_username(), detail=f"passkey “{name}”"
        )
    return passkey


# --- removing ---------------------------------------------------------------------------------


def remove_own(request: HttpRequest, user: User, *, totp_device: bool = False, passkey_id: int | None = None) -> str:
    """Remove one of one's own factors; the last one goes only where the role does not need one
    (then the recovery codes go with it). What was removed, for the message."""
    with transaction.atomic():
        factors = factors_of(user)
        if totp_device:
            if factors.totp is None:
                raise LookupError("no authenticator app")
            what, remaining = "authenticator app", len(factors.passkeys)
            target: models.Model = factors.totp
        else:
            passkey = next((p for p in factors.passkeys if p.pk == passkey_id), None)
            if passkey is None:
                raise LookupError("no such passkey")
            what, remaining = f"passkey “{passkey.name}”", len(factors.passkeys) - 1 + (factors.totp is not None)
            target = passkey
        if remaining == 0 and required_for(user):
            raise LastFactor("Your role needs a second factor: add another one before you remove this one.")
        target.delete()
        if remaining == 0:
            RecoveryCode.objects.filter(user=user).delete()
        record_event("second-factor.removed", request=request, target=user.get_username(), detail=what)
    return what


def reset(request: HttpRequest, uid: str) -> Factors | None:
    """A member of staff removes every second factor of someone else (the views decide who may).
    Their sessions end, and they are told by mail. The factors removed, or None if there were none."""
    user = User.objects.filter(username=uid).first()
    if user is None:
        return None
    with transaction.atomic():
        factors = factors_of(user)
        if not factors.any and not factors.recovery_codes_left:
            return None
        TotpDevice.objects.filter(user=user).delete()
        Passkey.objects.filter(user=user).delete()
        RecoveryCode.objects.filter(user=user).delete()
        # A new unusable password changes the session hash: every open session of theirs ends.
        user.set_unusable_password()
        user.save(update_fields=["password"])
        notice = ResetNotice.objects.create(uid=uid, reset_by=request.user.get_username())
        record_event("second-factor.reset", request=request, target=uid, detail=f"removed: {factors.describe()}")
        transaction.on_commit(lambda: send_reset_notice(notice.pk))
    return factors


def _notice_text(notice: ResetNotice) -> str:
    when = format_datetime(notice.created_at, zone=True)
    return (
        f"Hello,\n\n"
        f"on {when} a member of staff ({notice.reset_by}) removed the second factor of your mail\n"
        f"account {notice.uid}: authenticator app, passkeys and recovery codes. You were signed out\n"
        f"everywhere.\n\n"
        f"If you asked for this: sign in with your password and set up a new second factor.\n\n"
        f"If you did not ask for it, tell {settings.ABUSE_CONTACT} at once: someone may be trying\n"
        f"to take over your account.\n\n"
        f"-- \nmailadmin (an automatic message; replies are read by {settings.NOTICE_SENDER})\n"
    )


def send_reset_notice(notice_id: int) -> bool:
    """Try to hand the notice to Postfix now; True once it is sent (or cannot ever be)."""
    notice = ResetNotice.objects.filter(pk=notice_id, sent_at__isnull=True).first()
    if notice is None:
        return True
    try:
        person = directory.get_user(notice.uid)
        if person is None or not person.mail:
            ResetNotice.objects.filter(pk=notice.pk).update(sent_at=timezone.now(), last_error="no mail address")
            return True
        message = outgoing_mail.notice(
            person.mail, "Your second factor for mail sign-in was removed", _notice_text(notice)
        )
        outgoing_mail.send(message, sender=settings.NOTICE_SENDER, recipients=[person.mail])
    except (outgoing_mail.MailNotSent, directory.DirectoryUnavailable) as exc:
        log.warning("second-factor reset notice for %s not sent yet: %s", notice.uid, exc)
        ResetNotice.objects.filter(pk=notice.pk).update(attempts=notice.attempts + 1, last_error=str(exc)[:500])
        return False
    ResetNotice.objects.filter(pk=notice.pk).update(sent_at=timezone.now(), attempts=notice.attempts + 1, last_error="")
    return True


def send_pending_notices() -> int:
    """Retry notices that could not be sent at once (beat); the number still unsent."""
    now = timezone.now()
    waiting = ResetNotice.objects.filter(
        sent_at__isnull=True,
        # Younger ones are still being sent by the request that made them.
        created_at__lt=now - timedelta(seconds=30),
        created_at__gte=now - timedelta(days=NOTICE_RETRY_DAYS),
    ).values_list("pk", flat=True)
    return sum(not send_reset_notice(pk) for pk in waiting)
