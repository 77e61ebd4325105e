"""Mail through the private, real Postfix fed by the published maps (python -m localservices
test starts it; it reads settings.POSTFIX_MAP_DIR and delivers to Maildirs under
STATE_DIR/mail/<domain>/<user>/)."""

import secrets
import smtplib
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone

from accounts.directory import DirectoryUser
from aliases.models import Alias, AliasTombstone, Domain
from postfix import publication

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

DEADLINE = 20.0  # seconds to wait for Postfix to act; polled, normally well under a second


def rcpt_reply(address: str) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", settings.SMTP_PORT, timeout=10) as smtp:
        smtp.ehlo("tests.example")
        smtp.mail("sender@outside.example")
        code, text = smtp.rcpt(address)
        smtp.rset()
        return code, text.decode()


def wait_for_rcpt(address: str, accepted: bool) -> tuple[int, str]:
    deadline = time.monotonic() + DEADLINE
    while True:
        code, text = rcpt_reply(address)
        if (code == 250) == accepted or time.monotonic() > deadline:
            return code, text
        time.sleep(0.1)


def send(to: str) -> str:
    token = secrets.token_hex(8)
    message = EmailMessage()
    message["From"] = "sender@outside.example"
    message["To"] = to
    message["Subject"] = f"test {token}"
    message.set_content("hello")
    with smtplib.SMTP("127.0.0.1", settings.SMTP_PORT, timeout=10) as smtp:
        smtp.send_message(message)
    return token


def maildir(address: str) -> Path:
    local, _, domain = address.partition("@")
    return Path(settings.STATE_DIR) / "mail" / domain / local / "new"


def delivered(address: str, token: str) -> bool:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        folder = maildir(address)
        if folder.is_dir() and any(token in path.read_text(errors="replace") for path in folder.iterdir()):
            return True
        time.sleep(0.05)
    return False


def publish() -> None:
    publication.request_publication("test")
    outcome = publication.publish(coalesce=False)
    assert outcome.status in ("published", "unchanged"), outcome.error


@pytest.fixture(autouse=True)
def reload_every_time() -> Iterator[None]:
    with override_settings(POSTFIX_RELOAD_MIN_INTERVAL=0):
        yield


@pytest.fixture
def world(make_directory_user: Callable[..., DirectoryUser]) -> dict[str, object]:
    """An alias owner, a bystander mailbox, and a catch-all domain with a real mailbox of its own."""
    tag = secrets.token_hex(3)
    owner = make_directory_user(uid=f"own{tag}")
    bystander = make_directory_user(uid=f"bys{tag}")
    catch_domain = f"catch{tag}.example.org"
    resident = make_directory_user(uid=f"res{tag}", mail=f"res{tag}@{catch_domain}")
    owner_user = User.objects.create(username=owner.uid, email=owner.mail)
    alias_domain = Domain.objects.create(name=f"alias{tag}.example.org", is_alias_domain=True)
    catchall = Domain.objects.create(name=catch_domain, catchall_destinations=owner.mail)
    return {
        "tag": tag,
        "owner": owner_user,
        "owner_mail": owner.mail,
        "bystander": bystander.mail,
        "resident": resident.mail,
        "alias_domain": alias_domain,
        "catchall": catchall,
    }


def test_mail_to_an_alias_reaches_its_owner(world: dict) -> None:
    alias = Alias.objects.create(owner=world["owner"], local_part="shopping", domain=world["alias_domain"])
    publish()

    assert wait_for_rcpt(alias.address, accepted=True)[0] == 250
    assert delivered(world["owner_mail"], send(alias.address))


def test_catch_all_takes_unknown_addresses_but_not_real_mailboxes(world: dict) -> None:
    publish()
    unknown = f"anything-{world['tag']}@{world['catchall'].name}"

    assert wait_for_rcpt(unknown, accepted=True)[0] == 250
    assert delivered(world["owner_mail"], send(unknown))
    token = send(world["resident"])
    assert delivered(world["resident"], token)
    assert not delivered_quickly(world["owner_mail"], token)


def delivered_quickly(address: str, token: str) -> bool:
    folder = maildir(address)
    return folder.is_dir() and any(token in path.read_text(errors="replace") for path in folder.iterdir())


def test_disabled_expired_and_deleted_aliases_are_refused_even_under_a_catch_all(world: dict) -> None:
    owner, catchall = world["owner"], world["catchall"]
    disabled = Alias.objects.create(owner=owner, local_part="leaked", domain=catchall)
    expired = Alias.objects.create(owner=owner, local_part="shortlived", domain=catchall)
    deleted = Alias.objects.create(owner=owner, local_part="gone", domain=world["alias_domain"])
    publish()
    for alias in (disabled, expired, deleted):
        assert wait_for_rcpt(alias.address, accepted=True)[0] == 250
    assert delivered(world["bystander"], send(world["bystander"]))

    Alias.objects.filter(pk=disabled.pk).update(enabled=False)
    Alias.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    AliasTombstone.objects.create(address=deleted.address)
    deleted.delete()
    publish()

    for alias, text in ((disabled, "disabled"), (expired, "expired"), (deleted, "deleted")):
        code, reply = wait_for_rcpt(alias.address, accepted=False)
        assert code == 550 and text in reply and "5.1.1" in reply
    # Everyone else keeps receiving.
    assert delivered(world["bystander"], send(world["bystander"]))
    assert delivered(world["resident"], send(world["resident"]))


def test_failing_postmap_keeps_the_previous_tables_answering(world: dict, tmp_path: Path) -> None:
    alias = Alias.objects.create(owner=world["owner"], local_part="steady", domain=world["alias_domain"])
    publish()
    map_files = {p.name: p.read_bytes() for p in Path(settings.POSTFIX_MAP_DIR).iterdir()}
    Alias.objects.filter(pk=alias.pk).update(enabled=False)
    publication.request_publication("test")

    with override_settings(POSTMAP_COMMAND="/bin/false", MAP_INCREMENTAL_MAX_LINES=0):
        assert publication.publish(coalesce=False).status == "failed"

    assert {p.name: p.read_bytes() for p in Path(settings.POSTFIX_MAP_DIR).iterdir()} == map_files
    assert rcpt_reply(alias.address)[0] == 250
    assert delivered(world["owner_mail"], send(alias.address))
    # Fixed: the next attempt (the periodic reconcile) publishes.
    assert publication.publish(coalesce=False, full=True).status == "published"
    assert wait_for_rcpt(alias.address, accepted=False)[0] == 550


def _manage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(settings.BASE_DIR) / ".venv/bin/python"), "manage.py", *args],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
