"""Suspension as Postfix enforces it: the private Postfix looks the sender-block flag up live
in slapd (check_sender_access ldap:) and the published hash: sender_access map (aliases)."""

import os
import smtplib
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from accounts import sender_block, suspension
from aliases.models import Alias, Domain
from localservices.slapd import Slapd
from postfix.publication import publish
from tests.test_suspension import HOSTILE_REASON

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def mail_from(address: str) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", settings.SMTP_PORT, timeout=10) as smtp:
        smtp.ehlo("test.example.net")
        code, message = smtp.mail(address)
        smtp.rset()
    return code, message.decode()


def _admin(make_directory_user) -> User:
    person = make_directory_user(role="admin")
    return User.objects.get_or_create(username=person.uid)[0]


def test_a_suspended_mailbox_is_refused_at_mail_from_live_and_accepted_after_reinstating(
    make_directory_user,
) -> None:
    target, bystander = make_directory_user(), make_directory_user()
    admin = _admin(make_directory_user)
    assert mail_from(target.mail)[0] == 250

    suspension.suspend(target.uid, HOSTILE_REASON, None, admin)
    code, message = mail_from(target.mail)
    assert code == 554
    assert message.startswith("5.7.1 ")
    assert message.endswith(settings.SUSPENSION_REJECT_TEXT)
    assert "script" not in message and "uid=" not in message and "Spam run" not in message
    assert mail_from(target.mail.upper())[0] == 554
    assert mail_from(bystander.mail)[0] == 250

    suspension.reinstate(target.uid, admin)
    assert mail_from(target.mail)[0] == 250
    assert mail_from(bystander.mail)[0] == 250


def test_a_suspended_users_alias_is_refused_through_the_published_sender_access_map(
    make_directory_user,
) -> None:
    target, bystander = make_directory_user(), make_directory_user()
    admin = _admin(make_directory_user)
    domain = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})[0]
    alias = Alias.objects.create(
        owner=User.objects.get_or_create(username=target.uid)[0], local_part="shopping", domain=domain
    )
    other = Alias.objects.create(
        owner=User.objects.get_or_create(username=bystander.uid)[0], local_part="news", domain=domain
    )
    publish(force=True, coalesce=False)
    assert mail_from(alias.address)[0] == 250

    suspension.suspend(target.uid, "abuse", None, admin)
    publish(coalesce=False)
    code, message = mail_from(alias.address)
    assert (code, message) == (
        554,
        f"5.7.1 <{alias.address}>: Sender address rejected: {settings.SUSPENSION_REJECT_TEXT}",
    )
    assert mail_from(other.address)[0] == 250

    suspension.reinstate(target.uid, admin)
    publish(coalesce=False)
    assert mail_from(alias.address)[0] == 250


def _lookup(cf_lines: list[str], key: str, tmp_path: Path) -> str:
    cf = tmp_path / "lookup.cf"
    cf.write_text("\n".join(cf_lines) + "\n")
    cf.chmod(0o600)
    # Postfix waits for a table file written within the current second to settle.
    old = time.time() - 60
    os.utime(cf, (old, old))
    result = subprocess.run(
        ["/usr/sbin/postmap", "-c", str(settings.POSTFIX_CONFIG_DIR), "-q", key, f"ldap:{cf}"],
        capture_output=True,
        text=True,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: not found
    return result.stdout.strip()


def test_the_submission_tables_block_a_suspended_login_and_map_addresses_to_logins(
    make_directory_user, tmp_path: Path
) -> None:
    password = Slapd().password_file("postfix").read_text().strip()
    target, bystander = make_directory_user(), make_directory_user()
    suspension.suspend(target.uid, "abuse", None, _admin(make_directory_user))
    reject = f"REJECT {settings.SUSPENSION_REJECT_TEXT}"

    sasl = sender_block.sasl_sender_block_cf_lines(password)
    assert _lookup(sasl, target.uid, tmp_path) == reject
    assert _lookup(sasl, target.mail, tmp_path) == reject
    assert _lookup(sasl, bystander.uid, tmp_path) == ""
    assert _lookup(sasl, "*", tmp_path) == ""  # Postfix escapes filter metacharacters
    assert _lookup(sender_block.sender_block_cf_lines(password), target.mail, tmp_path) == reject
    logins = _lookup(sender_block.sender_login_maps_cf_lines(password), bystander.mail, tmp_path)
    assert logins == f"{bystander.uid},{bystander.mail}"

    suspension.reinstate(target.uid, None)
    assert _lookup(sasl, target.uid, tmp_path) == ""
