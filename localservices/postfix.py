"""A private Postfix instance: own config, queue and map directories, loopback only.

It delivers mailboxes to Maildirs under <state>/mail/<domain>/<user>/ and relays all
other mail to the "outside world" server on OUTSIDE_SMTP_PORT.
"""

import os
import pwd
import shutil
from pathlib import Path

from localservices.process import ServiceError, read_pid, run, wait_for_port, wait_for_port_closed
from localservices.slapd import Slapd
from mailadmin import settings

# The generator reads django.conf.settings (no database, no app registry needed).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailadmin.settings")

from postfix import config  # noqa: E402
from postfix.features import ConfigContext  # noqa: E402
from postfix.postmap import SUFFIXES  # noqa: E402

POSTFIX = "/usr/sbin/postfix"
POSTMAP = "/usr/sbin/postmap"

MASTER_CF = """\
{smtp_listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    def __init__(self) -> None:
        root = settings.STATE_DIR
        self.state_dir = root / "postfix"
        self.port = settings.SMTP_PORT
        self.config_dir = settings.POSTFIX_CONFIG_DIR
        self.queue_dir = self.state_dir / "queue"
        self.data_dir = self.state_dir / "data"
        self.map_dir = settings.POSTFIX_MAP_DIR
        self.mail_dir = root / "mail"

    def _context(self) -> ConfigContext:
        password = Slapd().password_file("postfix").read_text().strip()
        # No SASL here (no Dovecot auth socket): the instance has no submission service.
        return config.context(ldap_password=password, services=frozenset())

    def _main_cf(self, ctx: ConfigContext) -> str:
        """This instance's own lines, then exactly what `manage.py postfix_config` prints."""
        nobody = pwd.getpwnam("nobody")
        own = f"""\
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.{settings.MAIL_DOMAIN}
mydomain = {settings.MAIL_DOMAIN}
myorigin = $mydomain
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{settings.OUTSIDE_SMTP_PORT}
smtp_tls_security_level = none
biff = no
append_dot_mydomain = no
smtputf8_enable = no
virtual_mailbox_base = {self.mail_dir}
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
# Quick retries so the demo and the tests see recovery in seconds, not minutes.
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 10s
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
smtpd_client_connection_count_limit = 0
default_process_limit = 50
"""
        return own + "\n".join(config.main_cf(ctx)) + "\n"

    def _master_cf(self, ctx: ConfigContext) -> str:
        return MASTER_CF.format(smtp_listen=f"127.0.0.1:{self.port}") + "\n".join(config.master_cf(ctx)) + "\n"

    def configure(self) -> None:
        for d in (self.config_dir, self.queue_dir, self.data_dir, self.map_dir, self.mail_dir):
            d.mkdir(parents=True, exist_ok=True)
        nobody = pwd.getpwnam("nobody")
        shutil.chown(self.mail_dir, nobody.pw_uid, nobody.pw_gid)
        shutil.chown(self.data_dir, "postfix", "postfix")
        ctx = self._context()
        (self.config_dir / "main.cf").write_text(self._main_cf(ctx))
        (self.config_dir / "master.cf").write_text(self._master_cf(ctx))
        for name, lines in config.cf_files(ctx).items():
            cf = self.config_dir / name
            cf.write_text("\n".join(lines) + "\n")
            cf.chmod(0o600)
        for name in settings.POSTFIX_MAPS:
            source = self.map_dir / name
            if not Path(f"{source}{SUFFIXES[settings.POSTFIX_MAP_TYPE]}").exists():
                source.touch()
                run([POSTMAP, "-c", str(self.config_dir), f"{settings.POSTFIX_MAP_TYPE}:{source}"])

    @property
    def pidfile(self) -> Path:
        return self.queue_dir / "pid" / "master.pid"

    def start(self) -> None:
        if read_pid(self.pidfile) is not None:
            return
        self.configure()
        run([POSTFIX, "-c", str(self.config_dir), "set-permissions"])
        run([POSTFIX, "-c", str(self.config_dir), "start"])
        wait_for_port(self.port, "postfix")

    def stop(self) -> None:
        if read_pid(self.pidfile) is None:
            return
        try:
            run([POSTFIX, "-c", str(self.config_dir), "stop"])
        except ServiceError:
            pass
        wait_for_port_closed(self.port)

    def reload(self) -> None:
        run([POSTFIX, "-c", str(self.config_dir), "reload"])
