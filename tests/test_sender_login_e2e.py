"""Replying from an alias through submission: a stock Debian Postfix with the configuration
applied by `manage.py postfix_apply --submission`, SASL by a private Dovecot reading the same
directory. A person may use their mailbox and their live aliases as MAIL FROM; another
person's alias and a switched-off one get the login-mismatch reply."""

import re
import secrets
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from accounts import directory
from aliases.models import Alias, Domain
from limits.counters import Counters
from localservices.process import free_port
from tests.conftest import DEMO_PASSWORD
from tests.test_postfix_apply import apply
from tests.test_postfix_apply_e2e import MAP_TYPES, AppliedPostfix, applied_postfix
from tests.test_postfix_e2e import publish
from tests.test_security_dovecot import run_dovecot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]


@pytest.fixture
def dovecot_auth(tmp_path: Path) -> Iterator[int]:
    """A Dovecot whose auth service answers Postfix's SASL requests on a loopback port."""
    port = free_port()
    services = f"""service auth {{
  inet_listener postfix-sasl {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""
    yield from run_dovecot(tmp_path / "dovecot", port, 0, services)


class SubmissionPostfix(AppliedPostfix):
    auth_port = 0
    submission_port = 0

    def configure(self) -> None:
        """Then submission, as the postmaster applies it; on a test host it listens on a free
        loopback port, outside a chroot, and asks Dovecot over TCP instead of private/auth."""
        apply(self.config_dir, "--submission", "--ldap-password-file", str(self.password_file))
        self.submission_port = free_port()
        master = self.config_dir / "master.cf"
        text = master.read_text()
        service = re.compile(r"^submission\s+inet\s+n\s+-\s+y\s+-\s+-\s+smtpd$", re.MULTILINE)
        text, found = service.subn(f"127.0.0.1:{self.submission_port} inet n - n - - smtpd", text)
        assert found == 1, text
        text = text.replace("smtpd_sasl_path=private/auth", f"smtpd_sasl_path=inet:127.0.0.1:{self.auth_port}")
        master.write_text(text)

    def submission(self, login: str) -> smtplib.SMTP:
        smtp = smtplib.SMTP("127.0.0.1", self.submission_port, timeout=10)
        smtp.ehlo("client.example")
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the test host's own certificate
        smtp.starttls(context=context)
        smtp.ehlo("client.example")
        smtp.login(login, DEMO_PASSWORD)
        return smtp


@pytest.fixture(params=MAP_TYPES)
def submission(request: pytest.FixtureRequest, dovecot_auth: int) -> Iterator[SubmissionPostfix]:
    SubmissionPostfix.auth_port = dovecot_auth
    yield from applied_postfix(SubmissionPostfix, request.param)


def mail_from(smtp: smtplib.SMTP, sender: str) -> tuple[int, str]:
    code, text = smtp.mail(sender)
    smtp.rset()
    return code, text.decode()


def test_a_person_replies_from_their_alias_and_not_from_anyone_elses(
    submission: SubmissionPostfix, make_directory_user: Callable[..., directory.DirectoryUser]
) -> None:
    tag = secrets.token_hex(3)
    owner, other = make_directory_user(uid=f"own{tag}"), make_directory_user(uid=f"oth{tag}")
    domain = Domain.objects.create(name=f"alias{tag}.example.org", is_alias_domain=True)
    owners_user = User.objects.create(username=owner.uid, email=owner.mail)
    others_user = User.objects.create(username=other.uid, email=other.mail)
    shop = Alias.objects.create(owner=owners_user, local_part="shopexamplecom", domain=domain)
    news = Alias.objects.create(owner=others_user, local_part="news", domain=domain)
    publish()

    with submission.submission(owner.uid) as smtp:
        assert mail_from(smtp, shop.address)[0] == 250
        assert mail_from(smtp, owner.mail)[0] == 250
        code, text = mail_from(smtp, news.address)
        assert code == 553 and "not owned by user" in text
        code, text = mail_from(smtp, other.mail)
        assert code == 553 and "not owned by user" in text

    # Mail sent with a login passes the policy service, which counts it for the outbound limits.
    with submission.submission(owner.uid) as smtp:
        code, _ = smtp.mail(shop.address)
        assert code == 250 and smtp.rcpt("someone@remote.example")[0] == 250
        smtp.rset()
    counted = {sender.login for sender in Counters(settings.LIMIT_COUNTER_URL).heaviest("hour", limit=1000)}
    assert {owner.uid, owner.mail} & counted, counted

    Alias.objects.filter(pk=shop.pk).update(enabled=False)
    publish()
    # cdb and hash tables: the reload has the next session served by a new smtpd.
    deadline = time.monotonic() + 20
    while True:
        with submission.submission(owner.mail) as smtp:  # logged in by address this time
            code, text = mail_from(smtp, shop.address)
            if code == 553 or time.monotonic() > deadline:
                break
        time.sleep(0.2)
    assert code == 553 and "not owned by user" in text
    with submission.submission(owner.mail) as smtp:
        assert mail_from(smtp, owner.mail)[0] == 250

    log = submission.log.read_text()
    assert "warning:" not in log, [line for line in log.splitlines() if "warning:" in line]
