"""A private Postfix instance: own config, queue and map directories, loopback only.

It delivers mailboxes to Maildirs under <state>/mail/<domain>/<user>/ and relays all
other mail to the "outside world" server on OUTSIDE_SMTP_PORT.
"""

import pwd
import shutil
from pathlib import Path

from localservices.process import ServiceError, read_pid, run, wait_for_port, wait_for_port_closed
from localservices.slapd import Slapd
from mailadmin import settings
from outofoffice import handoff
from policy import postfix as policy_postfix
from trail import postlog

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
        self.log_file = settings.MAILLOG_FILE  # the delivery trail follows it

    def _main_cf(self) -> str:
        maps = self.map_dir
        nobody = pwd.getpwnam("nobody")
        vacation_handoff = "\n".join(handoff.main_cf_lines(settings.VACATION_ROUTING_DOMAIN))
        maillog = "\n".join(postlog.main_cf_lines(self.log_file, written_by_postfix=True))
        # The policy service, exactly as `manage.py postfix_config` prints it.
        policy_check = "\n".join(policy_postfix.recipient_restrictions(settings.POLICY_HOST, settings.POLICY_PORT))
        policy_main = "\n".join(policy_postfix.main_cf_lines(settings.POLICY_TIMEOUT, settings.POLICY_DEFAULT_ACTION))
        return f"""\
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
mail_owner = postfix
setgid_group = postdrop
{maillog}
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
virtual_mailbox_domains = hash:{maps}/mailbox_domains
virtual_alias_domains = hash:{maps}/alias_domains
virtual_alias_maps = hash:{maps}/virtual
virtual_mailbox_maps = hash:{maps}/mailboxes
virtual_mailbox_base = {self.mail_dir}
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
transport_maps = hash:{maps}/transport
smtpd_delay_reject = no
smtpd_sender_restrictions =
    check_sender_access ldap:{self.config_dir}/sender_block.cf,
    check_sender_access hash:{maps}/sender_access
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
    check_recipient_access hash:{maps}/recipient_access,
{policy_check}
    permit_mynetworks,
    reject_unauth_destination
# Quick retries so the demo and the tests see recovery in seconds, not minutes.
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 10s
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
smtpd_client_connection_count_limit = 0
default_process_limit = 50
{vacation_handoff}
{policy_main}
"""

    def _master_cf(self) -> str:
        # The vacation hand-off, exactly as `manage.py postfix_config` prints it.
        copies = handoff.master_cf_lines(settings.VACATION_ROUTING_DOMAIN, settings.VACATION_HANDOFF_PORT)
        return MASTER_CF.format(smtp_listen=f"127.0.0.1:{self.port}") + "\n".join(copies) + "\n"

    def _sender_block_cf(self) -> str:
        slapd = Slapd()
        password = slapd.password_file("postfix").read_text().strip()
        attr = settings.LDAP_SENDER_BLOCK_ATTR
        return f"""\
server_host = {settings.LDAP_URI}
version = 3
bind = yes
bind_dn = {slapd.service_dn("postfix")}
bind_pw = {password}
search_base = {settings.LDAP_PEOPLE_DN}
query_filter = (&(objectClass=mailAccount)(mail=%s)({attr}=TRUE))
result_attribute = mail
result_format = REJECT {settings.SUSPENSION_REJECT_TEXT.replace("%", "%%")}
"""

    def configure(self) -> None:
        for d in (self.config_dir, self.queue_dir, self.data_dir, self.map_dir, self.mail_dir):
            d.mkdir(parents=True, exist_ok=True)
        nobody = pwd.getpwnam("nobody")
        shutil.chown(self.mail_dir, nobody.pw_uid, nobody.pw_gid)
        shutil.chown(self.data_dir, "postfix", "postfix")
        (self.config_dir / "main.cf").write_text(self._main_cf())
        (self.config_dir / "master.cf").write_text(self._master_cf())
        cf = self.config_dir / "sender_block.cf"
        cf.write_text(self._sender_block_cf())
        cf.chmod(0o600)
        for name in settings.POSTFIX_MAPS:
            source = self.map_dir / name
            if not (self.map_dir / f"{name}.db").exists():
                source.touch()
                run([POSTMAP, "-c", str(self.config_dir), f"hash:{source}"])

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
