"""What an admin does to mail accounts: create, disable, reset a password. Each is one
directory write followed by an audit event; nothing is recorded if the directory refuses."""

from django.contrib.auth.models import User
from django.http import HttpRequest

from accounts import directory
from audit.models import record_event


def create_mail_user(
    uid: str,
    name: str,
    mail: str,
    password: str | None,
    request: HttpRequest | None,
    *,
    hashed_password: str | None = None,
    actor: User | None = None,
) -> directory.DirectoryUser:
    """`password` in clear, or `hashed_password` as a `{CRAM-MD5}` value (CSV import); `actor`
    when there is no request (the import worker)."""
    person = add_mail_user(uid, name, mail, password, hashed_password=hashed_password)
    record_mail_user_created(uid, mail, request, actor=actor)
    return person


def add_mail_user(
    uid: str, name: str, mail: str, password: str | None, *, hashed_password: str | None = None
) -> directory.DirectoryUser:
    """The directory write of create_mail_user alone (the import records its events by batch)."""
    given, _, surname = name.rpartition(" ")
    return directory.create_user(
        uid=uid,
        cn=name,
        sn=surname or name,
        given_name=given,
        mail=mail,
        password=password,
        hashed_password=hashed_password,
    )


def record_mail_user_created(
    uid: str, mail: str, request: HttpRequest | None, *, actor: User | None = None, detail: str = ""
) -> None:
    record_event("account.create", request=request, actor=actor, target=uid, detail=f"mailbox {mail}{detail}")


def disable_account(uid: str, reason: str, request: HttpRequest) -> None:
    directory.remove_password(uid)
    # A new unusable password changes the session hash: the user's open sessions end.
    user = User.objects.filter(username=uid).first()
    if user is not None:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    record_event("account.disable", request=request, target=uid, detail=reason)


def reset_password(uid: str, password: str, request: HttpRequest) -> None:
    directory.set_password(uid, password)
    user = User.objects.filter(username=uid).first()
    if user is not None:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    record_event("account.password-reset", request=request, target=uid)
