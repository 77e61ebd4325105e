"""manage.py postfix_apply: the generated configuration merged into a stock Debian Postfix
(postfix/merge.py holds the rules, tested here on their own too)."""

import grp
import shutil
import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEvent
from postfix.merge import (
    MergeError,
    Service,
    desired_from_generated,
    ldap_table_text,
    list_items,
    local_destination_conflicts,
    main_cf_parameters,
    merge_main_cf,
    merge_master_cf,
    merged_list,
    parse_main_cf,
)
from tests.test_hostile_input_forms import NASTY

pytestmark = pytest.mark.django_db

DEBIAN = Path("/usr/share/postfix")
PASSWORD = "s3cret-Postfix-bind-pw"
# What Debian's postinst sets with `postconf -e` on a fresh "Internet Site" install, after
# copying main.cf.debian and main.cf.tls (/var/lib/dpkg/info/postfix.postinst).
DEBIAN_POSTINST = [
    "smtpd_relay_restrictions=permit_mynetworks permit_sasl_authenticated defer_unauth_destination",
    "myhostname=mail.example.org",
    "alias_maps=hash:/etc/aliases",
    "alias_database=hash:/etc/aliases",
    "mydestination=$myhostname, localhost.example.org, localhost",
    "relayhost=",
    "mynetworks=127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128",
    "mailbox_size_limit=0",
    "recipient_delimiter=+",
    "inet_interfaces=all",
    "inet_protocols=all",
]


def table(name: str) -> str:
    """A published table as the generator names it (its type is a setting once there is one)."""
    return f"{getattr(settings, 'POSTFIX_MAP_TYPE', 'hash')}:{settings.POSTFIX_MAP_DIR}/{name}"


def postconf(config_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/usr/sbin/postconf", "-c", str(config_dir), *args], capture_output=True, text=True)


def stock_debian(config_dir: Path) -> Path:
    """A configuration directory as Debian 12's postfix package leaves it; only the queue and
    data directories are the test's own, so `postfix check` touches nothing of the system's."""
    config_dir.mkdir()
    main_cf = (DEBIAN / "main.cf.debian").read_text() + (DEBIAN / "main.cf.tls").read_text()
    (config_dir / "main.cf").write_text(main_cf)
    shutil.copy(DEBIAN / "master.cf.dist", config_dir / "master.cf")
    # Beside the configuration directory, not in it: postfix-script checks that everything
    # under the configuration directory belongs to root.
    queue, data = config_dir.parent / "queue", config_dir.parent / "data"
    queue.mkdir()
    data.mkdir()
    shutil.chown(data, "postfix", "postfix")
    own_dirs = [f"queue_directory={queue}", f"data_directory={data}"]
    result = postconf(config_dir, "-e", *DEBIAN_POSTINST, *own_dirs)
    assert result.returncode == 0 and not result.stderr, result.stderr
    return config_dir


@pytest.fixture
def host(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    return stock_debian(tmp_path / "postfix")


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "postfix-ldap-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def apply(host: Path, *args: str) -> str:
    out = StringIO()
    call_command("postfix_apply", "-c", str(host), *args, stdout=out)
    return out.getvalue()


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mode)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def assert_postfix_is_quiet(host: Path) -> None:
    shown = postconf(host)
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    checked = subprocess.run(["/usr/sbin/postfix", "-c", str(host), "check"], capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stderr == "" and checked.stdout == "", checked.stderr + checked.stdout


# --- the command on a stock Debian Postfix ----------------------------------------------------


def test_applied_to_stock_debian_postfix_check_and_postconf_warn_about_nothing(host: Path, password_file: Path) -> None:
    output = apply(host, "--ldap-password-file", str(password_file))

    assert_postfix_is_quiet(host)
    assert postconf(host, "-h", "virtual_alias_maps").stdout.strip() == table("virtual")
    recipient = postconf(host, "-h", "smtpd_recipient_restrictions").stdout
    assert recipient.split(",")[0].strip() == f"check_recipient_access {table('recipient_access')}"
    sender = postconf(host, "-h", "smtpd_sender_restrictions").stdout
    assert f"check_sender_access ldap:{host}/sender_block.cf" in sender
    # Debian's own settings stay as they were.
    assert "defer_unauth_destination" in postconf(host, "-h", "smtpd_relay_restrictions").stdout
    assert postconf(host, "-h", "mydestination").stdout.strip() == "$myhostname, localhost.example.org, localhost"
    # Only the services asked for: the hand-off pair; Debian's lmtp untouched, no submission.
    assert postconf(host, "-M", "lmtp/unix").stdout.split() == "lmtp unix - - y - - lmtp".split()
    assert postconf(host, "-M", "submission/inet").stdout == ""
    assert postconf(host, "-M", "mailadmin-autoreply/unix").stdout.strip()
    assert postconf(host, "-M", f"127.0.0.1:{settings.VACATION_HANDOFF_PORT}/inet").stdout.strip()
    assert "mailadmin_sender_login_maps" not in (host / "main.cf").read_text()
    # Each parameter defined once.
    definitions = [d.name for d in parse_main_cf((host / "main.cf").read_text())]
    assert len(definitions) == len(set(definitions))
    # The ldap: table: the real password, root:postfix 0640; the password is never printed.
    cf_file = host / "sender_block.cf"
    info = cf_file.stat()
    assert (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (0o640, 0, grp.getgrnam("postfix").gr_gid)
    assert f"bind_pw = {PASSWORD}\n" in cf_file.read_text()
    assert not (host / "sasl_sender_block.cf").exists() and not (host / "sender_login_maps.cf").exists()
    assert PASSWORD not in output
    assert "postconf -c" in output and "no warnings" in output
    event = AuditEvent.objects.get(action="postfix.apply")
    assert event.target == str(host) and "master.cf: add service mailadmin-autoreply/unix" in event.detail
    assert "sender_block.cf: written" in event.detail and PASSWORD not in event.detail


def test_applying_twice_changes_nothing_the_second_time(host: Path, password_file: Path) -> None:
    apply(host, "--ldap-password-file", str(password_file))
    before = snapshot(host)

    output = apply(host, "--ldap-password-file", str(password_file))

    assert "nothing to change" in output
    assert snapshot(host) == before
    assert AuditEvent.objects.filter(action="postfix.apply").count() == 1


def test_submission_brings_its_service_parameters_and_tables_and_no_warning(host: Path, password_file: Path) -> None:
    apply(host, "--submission", "--ldap-password-file", str(password_file))

    assert_postfix_is_quiet(host)
    service = postconf(host, "-M", "submission/inet").stdout
    assert "smtpd_sender_restrictions=$mailadmin_submission_sender_restrictions" in service
    logins = f"ldap:{host}/sender_login_maps.cf, {table('sender_login')}"
    assert postconf(host, "-h", "mailadmin_sender_login_maps").stdout.strip() == logins
    for name in ("sender_block.cf", "sasl_sender_block.cf", "sender_login_maps.cf"):
        assert (host / name).stat().st_mode & 0o7777 == 0o640
    before = snapshot(host)
    assert "nothing to change" in apply(host, "--submission", "--ldap-password-file", str(password_file))
    assert snapshot(host) == before


def test_dry_run_shows_the_changes_with_the_password_masked_and_writes_nothing(host: Path, password_file: Path) -> None:
    before = snapshot(host)

    output = apply(host, "--dry-run", "--ldap-password-file", str(password_file))

    assert snapshot(host) == before
    assert "would main.cf: set virtual_alias_maps" in output
    assert "would master.cf: add service mailadmin-autoreply/unix" in output
    assert f"+virtual_alias_maps = {table('virtual')}" in output
    assert f"would write {host}/sender_block.cf (mode 0640 root:postfix):" in output
    assert "bind_pw = ********" in output
    assert PASSWORD not in output
    assert not AuditEvent.objects.exists()


def test_the_host_restrictions_and_tables_are_kept_and_ours_go_before_anything_that_accepts(
    host: Path, password_file: Path
) -> None:
    result = postconf(
        host,
        "-e",
        "smtpd_recipient_restrictions=reject_non_fqdn_recipient, permit_mynetworks,"
        " check_policy_service unix:private/policy, reject_unauth_destination",
        "virtual_alias_maps=hash:/etc/postfix/virtual",
        "smtpd_delay_reject=yes",
    )
    assert result.returncode == 0

    apply(host, "--ldap-password-file", str(password_file))

    recipient = list_items(postconf(host, "-h", "smtpd_recipient_restrictions").stdout)
    assert recipient == [
        "reject_non_fqdn_recipient",
        f"check_recipient_access {table('recipient_access')}",
        f"check_policy_service inet:{settings.POLICY_HOST}:{settings.POLICY_PORT}",
        "permit_mynetworks",
        "check_policy_service unix:private/policy",
        "reject_unauth_destination",
    ]
    aliases = list_items(postconf(host, "-h", "virtual_alias_maps").stdout)
    assert aliases == [table("virtual"), "hash:/etc/postfix/virtual"]
    text = (host / "main.cf").read_text()
    assert text.count("smtpd_delay_reject") == 1 and text.count("virtual_alias_maps") == 1


@pytest.mark.parametrize("setting", ["POSTFIX_MAP_DIR", "LDAP_URI", "SUSPENSION_REJECT_TEXT"])
def test_a_setting_with_a_line_break_is_refused_before_anything_is_written(
    host: Path,
    password_file: Path,
    settings,
    setting: str,  # noqa: ANN001
) -> None:
    value = "/x\nsmtpd_recipient_restrictions = permit"
    setattr(settings, setting, Path(value) if setting == "POSTFIX_MAP_DIR" else value)
    before = snapshot(host)
    with pytest.raises(CommandError, match="control character"):
        apply(host, "--ldap-password-file", str(password_file))
    assert snapshot(host) == before


def test_a_mail_domain_in_the_hosts_mydestination_is_refused_before_anything_is_written(
    host: Path, password_file: Path
) -> None:
    assert (
        postconf(host, "-e", f"mydomain={settings.MAIL_DOMAIN}", "mydestination=$myhostname, $mydomain").returncode == 0
    )
    before = snapshot(host)
    with pytest.raises(CommandError, match=f"{settings.MAIL_DOMAIN}: in this host's mydestination"):
        apply(host, "--ldap-password-file", str(password_file))
    assert snapshot(host) == before
    assert local_destination_conflicts("mail.example.org, Example.ORG., localhost", ["example.org", "x.org"]) == [
        "example.org"
    ]


def test_without_ldap_the_published_tables_alone_are_merged_and_postfix_stays_quiet(host: Path) -> None:
    output = apply(host, "--without-ldap")

    assert_postfix_is_quiet(host)
    assert "ldap:" not in (host / "main.cf").read_text()
    assert list_items(postconf(host, "-h", "smtpd_sender_restrictions").stdout) == [
        f"check_sender_access {table('sender_access')}"
    ]
    assert not list(host.glob(".*.tmp")) and not (host / "sender_block.cf").exists()
    assert "nothing to change" in apply(host, "--without-ldap") and "sender_block.cf" not in output
    with pytest.raises(CommandError, match="needs postfix-ldap"):
        apply(host, "--without-ldap", "--submission")


def test_without_the_password_file_nothing_is_written(host: Path) -> None:
    before = snapshot(host)
    with pytest.raises(CommandError, match="ldap-password-file"):
        apply(host)
    assert snapshot(host) == before


@pytest.mark.parametrize("value", [*NASTY, "relative/dir", "/nonexistent/postfix"], ids=repr)
def test_a_hostile_config_dir_is_refused_plainly(value: str, password_file: Path) -> None:
    with pytest.raises(CommandError, match="config_dir"):
        call_command("postfix_apply", "-c", value, "--ldap-password-file", str(password_file), stdout=StringIO())


@pytest.mark.parametrize(
    "content", ["two\nlines\n", "with space", "nul\x00byte", "\n", "tab\there", "bell\x07"], ids=repr
)
def test_a_hostile_password_file_is_refused_without_quoting_it(host: Path, tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad-password"
    path.write_text(content)
    before = snapshot(host)
    with pytest.raises(CommandError, match="ldap_password_file") as refused:
        apply(host, "--ldap-password-file", str(path))
    assert content.strip() == "" or content.strip() not in str(refused.value)
    assert snapshot(host) == before


# --- the merge rules ---------------------------------------------------------------------------


def test_list_items_keep_a_check_with_its_table_and_an_inline_table_whole() -> None:
    value = "reject_non_fqdn_recipient,check_recipient_access inline:{ a=OK, b=REJECT }  permit_mynetworks"
    assert list_items(value) == [
        "reject_non_fqdn_recipient",
        "check_recipient_access inline:{ a=OK, b=REJECT }",
        "permit_mynetworks",
    ]


def test_our_checks_go_after_the_host_refusals_and_before_its_first_permit() -> None:
    host = ["reject_unauth_pipelining", "defer_if_permit", "permit_sasl_authenticated", "reject"]
    ours = ["check_sender_access hash:/m/sender_access"]
    assert merged_list("smtpd_sender_restrictions", host, ours) == [
        "reject_unauth_pipelining",
        "defer_if_permit",
        "check_sender_access hash:/m/sender_access",
        "permit_sasl_authenticated",
        "reject",
    ]
    assert merged_list("virtual_alias_maps", ["hash:/etc/postfix/virtual"], ["hash:/m/virtual"]) == [
        "hash:/m/virtual",
        "hash:/etc/postfix/virtual",
    ]
    already = ["permit_mynetworks", *ours]
    assert merged_list("smtpd_sender_restrictions", already, ours) == already


def test_a_parameter_is_set_where_postfix_reads_it_and_appended_only_when_new() -> None:
    host = "a = 1\n# note\nb = x,\n    y\nb = z\nc = 3\n"
    text, changes = merge_main_cf(host, {"b": "new", "c": "3", "d": "4"})
    assert text == "a = 1\n# note\nb = x,\n    y\nb = new\nc = 3\n\n# mailadmin (manage.py postfix_apply)\nd = 4\n"
    assert [str(change) for change in changes] == ["main.cf: set b = new (was z)", "main.cf: set d = 4 (unset)"]
    again, none = merge_main_cf(text, {"b": "new", "c": "3", "d": "4"})
    assert (again, none) == (text, [])
    assert main_cf_parameters(text) == {"a": "1", "b": "new", "c": "3", "d": "4"}
    per_transport = "mailman-x_destination_recipient_limit = 1\n"
    assert merge_main_cf(per_transport, {})[0] == per_transport
    with pytest.raises(MergeError):
        merge_main_cf("this is not a parameter\n", {})


def test_master_cf_keeps_standard_services_sets_options_on_a_shared_one_and_replaces_our_own() -> None:
    host = (
        "lmtp      unix  -       -       y       -       -       lmtp\n"
        "submission inet n       -       y       -       -       smtpd\n"
        "  -o syslog_name=postfix/submission\n"
        "  -o smtpd_tls_security_level=may\n"
        "mailadmin-autoreply unix - - n - - smtp\n"
        "  -o old=1\n"
    )
    wanted = [
        Service("lmtp", "unix", ("-", "-", "n", "-", "-", "lmtp")),
        Service(
            "submission",
            "inet",
            ("n", "-", "y", "-", "-", "smtpd"),
            (("smtpd_tls_security_level", "encrypt"), ("x", "1")),
        ),
        Service("mailadmin-autoreply", "unix", ("-", "-", "n", "-", "-", "smtp"), (("new", "2"),)),
    ]
    text, changes = merge_master_cf(host, wanted)
    assert text.splitlines()[0] == "lmtp      unix  -       -       y       -       -       lmtp"
    assert "  -o syslog_name=postfix/submission\n  -o smtpd_tls_security_level=encrypt\n  -o x=1\n" in text
    assert "old=1" not in text and "  -o new=2" in text
    assert [change.text for change in changes] == [
        "set our -o options on the host's service submission/inet",
        "replace service mailadmin-autoreply/unix",
    ]
    assert merge_master_cf(text, wanted) == (text, [])
    # A host without lmtp gets the generated one.
    without_lmtp, added = merge_master_cf("smtp inet n - y - - smtpd\n", wanted[:1])
    assert without_lmtp.splitlines()[-1].split() == "lmtp unix - - n - - lmtp".split()
    assert [change.text for change in added] == ["add service lmtp/unix"]


def test_own_parameters_that_nothing_uses_are_left_out() -> None:
    main_cf = "x_restrictions = $mailadmin_a\nmailadmin_a = 1\nmailadmin_b = 2\nmailadmin_c = $mailadmin_b\n"
    master_cf = "submission inet n - y - - smtpd\n  -o y=$mailadmin_c\nown unix - - n - - smtp\n"
    without = desired_from_generated(main_cf, master_cf, [])
    assert set(without.parameters) == {"x_restrictions", "mailadmin_a"}
    assert [service.name for service in without.services] == ["own"]
    with_submission = desired_from_generated(main_cf, master_cf, ["submission"])
    assert set(with_submission.parameters) == {"x_restrictions", "mailadmin_a", "mailadmin_b", "mailadmin_c"}
    with pytest.raises(MergeError):
        desired_from_generated("a = 1\na = 2\n", master_cf, [])


def test_an_ldap_table_gets_the_real_password_and_refuses_one_that_could_add_a_line() -> None:
    lines = ["# /etc/postfix/x.cf (mode 0600)", "server_host = ldap://h", "bind_pw = <placeholder>"]
    assert ldap_table_text(lines, "pw").endswith("server_host = ldap://h\nbind_pw = pw\n")
    for bad in ("pw\nquery_filter = (uid=*)", "", "p w", "p\x00"):
        with pytest.raises(MergeError):
            ldap_table_text(lines, bad)


def test_the_command_never_logs_the_password(host: Path, password_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    apply(host, "--ldap-password-file", str(password_file))
    apply(host, "--dry-run", "--ldap-password-file", str(password_file))
    assert PASSWORD not in caplog.text
