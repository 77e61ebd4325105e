"""Dovecot reads the same directory with deploy/dovecot/dovecot-ldap.conf.ext: a private
Dovecot (auth_bind = no, the read-only cn=dovecot account of deploy/ldap/acl.conf) accepts
the {CRAM-MD5} passwords mailadmin writes, over IMAP with CRAM-MD5 and with PLAIN."""

import imaplib
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from accounts import directory
from localservices.process import free_port, port_open
from localservices.slapd import Slapd
from tests.conftest import DEMO_PASSWORD

pytestmark = pytest.mark.e2e

DOVECOT = "/usr/sbin/dovecot"
EXAMPLE = settings.BASE_DIR / "deploy" / "dovecot" / "dovecot-ldap.conf.ext"


def ldap_conf() -> str:
    """The example file with this run's directory in place of the example's."""
    slapd = Slapd()
    text = EXAMPLE.read_text()
    text = re.sub(r"(?m)^uris = .*$", f"uris = {settings.LDAP_URI}", text)
    text = re.sub(r"(?m)^dnpass = .*$", f"dnpass = {slapd.password_file('dovecot').read_text().strip()}", text)
    text = text.replace("ou=people,dc=example,dc=org", settings.LDAP_PEOPLE_DN)
    return text.replace("dc=example,dc=org", settings.LDAP_BASE_DN)


def run_dovecot(root: Path, port: int, imap_port: int, services: str = "") -> Iterator[int]:
    """A private Dovecot on the directory of this run (deploy/dovecot's passdb): IMAP on
    imap_port (0: none) and the given service blocks; yields once `port` answers."""
    (root / "run").mkdir(parents=True)
    (root / "home").mkdir()
    (root / "dovecot-ldap.conf.ext").write_text(ldap_conf())
    (root / "dovecot-ldap.conf.ext").chmod(0o600)
    conf = root / "dovecot.conf"
    conf.write_text(
        f"""base_dir = {root / "run"}
instance_name = mailadmin-test-{port}
state_dir = {root / "run"}
log_path = {root / "dovecot.log"}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:{root / "home"}/%n
passdb {{
  driver = ldap
  args = {root / "dovecot-ldap.conf.ext"}
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root / "home"}/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{services}"""
    )
    root.chmod(0o755)
    # Dovecot daemonises; its children keep any pipe open, so no output capture here (see its log).
    subprocess.run([DOVECOT, "-c", str(conf)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not port_open(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert port_open(port), (root / "dovecot.log").read_text()[-3000:]
        yield port
    finally:
        subprocess.run([DOVECOT, "-c", str(conf), "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def imap_port(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    yield from run_dovecot(tmp_path / "dovecot", port, port)


def _imap(port: int) -> imaplib.IMAP4:
    connection = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see DESIGN: ~40 ms per login otherwise
    return connection


def test_dovecot_accepts_the_password_mailadmin_wrote_with_cram_md5_and_plain(imap_port, make_directory_user) -> None:
    user = make_directory_user()
    assert directory.password_hash(user.uid).startswith("{CRAM-MD5}")
    for login in (user.uid, user.mail):
        connection = _imap(imap_port)
        assert connection.login_cram_md5(login, DEMO_PASSWORD)[0] == "OK"
        connection.logout()
    connection = _imap(imap_port)
    assert connection.login(user.mail, DEMO_PASSWORD)[0] == "OK"
    connection.logout()


def test_dovecot_refuses_a_wrong_password_and_a_disabled_account(imap_port, make_directory_user) -> None:
    user = make_directory_user()
    with pytest.raises(imaplib.IMAP4.error):
        _imap(imap_port).login_cram_md5(user.uid, DEMO_PASSWORD + "x")
    directory.remove_password(user.uid)  # what "Disable account" does
    with pytest.raises(imaplib.IMAP4.error):
        _imap(imap_port).login(user.uid, DEMO_PASSWORD)
