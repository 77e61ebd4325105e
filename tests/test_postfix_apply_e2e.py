"""A stock Debian Postfix with the configuration applied by `manage.py postfix_apply`, started
and fed by the published maps of each table type (lmdb, cdb, hash): mail to an alias is
delivered, a switched-off alias and a suspended sender are refused, and Postfix logs no warning."""

import pwd
import secrets
import shutil
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings

from accounts import directory
from aliases.models import Alias, Domain
from localservices.process import free_port, wait_for_port, wait_for_port_closed
from localservices.slapd import Slapd
from policy.service import PolicyThread
from postfix import publication
from tests.test_postfix_apply import apply, postconf, stock_debian
from tests.test_postfix_e2e import publish

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

DEADLINE = 20.0
POSTFIX = "/usr/sbin/postfix"
# Every table type the app publishes (MAILADMIN_POSTFIX_MAP_TYPE), each applied and started.
MAP_TYPES = ["lmdb", "cdb", "hash"]


class AppliedPostfix:
    def __init__(self, root: Path) -> None:
        self.config_dir = root / "postfix"
        self.mail_dir = root / "mail"
        self.log = root / "maillog"
        self.port = free_port()
        self.password_file = Slapd().password_file("postfix")

    def prepare(self) -> None:
        host = stock_debian(self.config_dir)
        nobody = pwd.getpwnam("nobody")
        self.mail_dir.mkdir()
        shutil.chown(self.mail_dir, nobody.pw_uid, nobody.pw_gid)
        # What this host's postmaster sets for themselves: a loopback listener on a free port
        # instead of port 25, Maildirs for the virtual mailboxes, a log file of its own, and a
        # certificate of its own (ssl-cert's snakeoil pair, which stock main.cf names, is made
        # by that package's postinst; this machine may not have it).
        cert, key = self.config_dir / "cert.pem", self.config_dir / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mail.example.org"]
            + ["-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
        )
        result = postconf(
            host,
            "-e",
            f"smtpd_tls_cert_file={cert}",
            f"smtpd_tls_key_file={key}",
            "inet_interfaces=127.0.0.1",
            "inet_protocols=ipv4",
            f"virtual_mailbox_base={self.mail_dir}",
            f"virtual_uid_maps=static:{nobody.pw_uid}",
            f"virtual_gid_maps=static:{nobody.pw_gid}",
            f"maillog_file={self.log}",
            f"maillog_file_prefixes={self.config_dir.parent}",
        )
        assert result.returncode == 0, result.stderr
        smtpd = postconf(host, "-M", "smtp/inet").stdout.split()
        assert postconf(host, "-MX", "smtp/inet").returncode == 0
        listener = f"127.0.0.1:{self.port}"
        assert postconf(host, "-M", f"{listener}/inet={listener} inet {' '.join(smtpd[2:])}").returncode == 0
        # Then mailadmin, as the postmaster would apply it (its delivery trail follows this
        # host's own log file, as the settings of this host's mailadmin would say).
        with override_settings(MAILLOG_FILE=self.log):
            apply(host, "--ldap-password-file", str(self.password_file))
            self.configure()

    def configure(self) -> None:
        """What else this host's postmaster applies (a subclass's services)."""

    def start(self) -> None:
        started = subprocess.run([POSTFIX, "-c", str(self.config_dir), "start"], capture_output=True, text=True)
        log = self.log.read_text() if self.log.exists() else ""
        assert started.returncode == 0, started.stderr + started.stdout + log
        wait_for_port(self.port, "the applied postfix")

    def stop(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.config_dir), "stop"], capture_output=True)
        wait_for_port_closed(self.port)

    def session(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
        smtp.ehlo("tests.example")
        return smtp

    def reply(self, sender: str, recipient: str) -> tuple[int, str]:
        with self.session() as smtp:
            code, text = smtp.mail(sender)
            if code == 250:
                code, text = smtp.rcpt(recipient)
            smtp.rset()
            return code, text.decode()

    def wait_for(self, sender: str, recipient: str, accepted: bool) -> tuple[int, str]:
        deadline = time.monotonic() + DEADLINE
        while True:
            code, text = self.reply(sender, recipient)
            if (code == 250) == accepted or time.monotonic() > deadline:
                return code, text
            time.sleep(0.2)

    def delivered(self, mailbox: str, token: str) -> bool:
        local, _, domain = mailbox.partition("@")
        folder = self.mail_dir / domain / local / "new"
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if folder.is_dir() and any(token in path.read_text(errors="replace") for path in folder.iterdir()):
                return True
            time.sleep(0.1)
        return False


def applied_postfix(kind: type[AppliedPostfix], map_type: str) -> Iterator[AppliedPostfix]:
    """That Postfix with tables of `map_type` of its own, published (and reloaded) by the app."""
    # Under the run's state directory: the postfix user must reach its data directory, and
    # pytest's temporary directories are private to root.
    root = Path(tempfile.mkdtemp(prefix="applied-postfix-", dir=settings.STATE_DIR))
    root.chmod(0o755)
    maps = root / "maps"
    maps.mkdir()
    # The shared private Postfix already listens on the usual hand-off port.
    tables = {"POSTFIX_MAP_DIR": maps, "POSTFIX_MAP_TYPE": map_type}
    with override_settings(VACATION_HANDOFF_PORT=free_port(), POSTFIX_RELOAD_MIN_INTERVAL=0, **tables):
        postfix = kind(root)
        postfix.prepare()
        with override_settings(POSTFIX_RELOAD_COMMAND="/bin/true"):  # nothing to reload yet
            assert publication.publish(force=True, coalesce=False).status == "published"
        policy = PolicyThread().start()  # the configuration asks it at every RCPT
        postfix.start()
        try:
            with override_settings(POSTFIX_RELOAD_COMMAND=f"{POSTFIX} -c {postfix.config_dir} reload"):
                yield postfix
        finally:
            postfix.stop()
            policy.stop()
            shutil.rmtree(root)


@pytest.fixture(params=MAP_TYPES)
def applied(request: pytest.FixtureRequest) -> Iterator[AppliedPostfix]:
    yield from applied_postfix(AppliedPostfix, request.param)


def test_a_stock_debian_postfix_with_the_applied_configuration_delivers_and_refuses(
    applied: AppliedPostfix, make_directory_user: Callable[..., directory.DirectoryUser]
) -> None:
    tag = secrets.token_hex(3)
    owner = make_directory_user(uid=f"apl{tag}")
    sender = make_directory_user(uid=f"snd{tag}")
    user = User.objects.create(username=owner.uid, email=owner.mail)
    domain = Domain.objects.create(name=f"alias{tag}.example.org", is_alias_domain=True)
    alias = Alias.objects.create(owner=user, local_part="shop", domain=domain)
    publish()
    virtual = postconf(applied.config_dir, "-h", "virtual_alias_maps").stdout
    assert f"{settings.POSTFIX_MAP_TYPE}:{settings.POSTFIX_MAP_DIR}/virtual" in virtual

    assert applied.wait_for("someone@outside.example", alias.address, accepted=True)[0] == 250
    token = secrets.token_hex(8)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "someone@outside.example", alias.address, token
    message.set_content("hello")
    with applied.session() as smtp:
        smtp.send_message(message)
    assert applied.delivered(owner.mail, token)

    # The recipient check merged into Debian's configuration refuses a switched-off alias.
    Alias.objects.filter(pk=alias.pk).update(enabled=False)
    publish()
    code, text = applied.wait_for("someone@outside.example", alias.address, accepted=False)
    assert code == 550 and "disabled" in text

    # The ldap: table, written with the real cn=postfix password, refuses a suspended sender.
    directory.set_sender_blocked(sender.uid, True)
    code, text = applied.reply(sender.mail, owner.mail)
    assert code == 554 and "suspended" in text

    log = applied.log.read_text()
    assert "warning:" not in log, [line for line in log.splitlines() if "warning:" in line]
