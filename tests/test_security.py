"""Production posture: check --deploy, security headers, sessions, throttling, secrets."""

import http.client
import json
import logging
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts import directory
from accounts.models import SignInFailure
from audit.models import AuditEvent
from localservices.process import free_port, port_open
from mailadmin.security import CONTENT_SECURITY_POLICY
from tests.conftest import DEMO_PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "Another quite long pässword 77"
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def _production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    secret = tmp_path / "secret_key"
    secret.write_text("k" + os.urandom(48).hex() + "\n")
    secret.chmod(0o600)
    # A clean environment, as a systemd unit gives: nothing leaks in from the test process
    # (pytest-django and Playwright set variables check --deploy rightly objects to).
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "MAILADMIN_STATE_DIR")}
    env.update(
        MAILADMIN_DEBUG="0",
        MAILADMIN_SECRET_KEY_FILE=str(secret),
        MAILADMIN_ALLOWED_HOSTS="mail.example.org",
        MAILADMIN_CSRF_TRUSTED_ORIGINS="https://mail.example.org",
        DJANGO_SETTINGS_MODULE="mailadmin.settings",
    )
    env.update(extra)
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True
    )


# --- check --deploy --------------------------------------------------------------------------


def test_production_settings_pass_check_deploy_without_a_warning(tmp_path) -> None:
    result = _manage(_production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    # The one check silenced is W021 (HSTS preload): the domain owner's decision, off unless set.
    assert "System check identified no issues (1 silenced)." in result.stdout


def test_check_deploy_stays_quiet_about_preload_once_it_is_asked_for(tmp_path) -> None:
    result = _manage(
        _production_env(tmp_path, MAILADMIN_HSTS_PRELOAD="1"), "check", "--deploy", "--fail-level", "WARNING"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_notices_a_production_setting_turned_off(tmp_path) -> None:
    # The test above would be worthless if check --deploy could not see our settings.
    env = _production_env(tmp_path, MAILADMIN_SSL_REDIRECT="0", MAILADMIN_SECURE_COOKIES="0")
    result = _manage(env, "check", "--deploy")
    assert "security.W008" in result.stderr and "security.W012" in result.stderr


def test_production_refuses_to_start_without_a_secret_key(tmp_path) -> None:
    env = _production_env(tmp_path)
    del env["MAILADMIN_SECRET_KEY_FILE"]
    result = _manage(env, "check")
    assert result.returncode != 0
    assert "MAILADMIN_SECRET_KEY" in result.stderr


def test_unreadable_secret_key_file_is_a_clear_error(tmp_path) -> None:
    env = _production_env(tmp_path, MAILADMIN_SECRET_KEY_FILE=str(tmp_path / "missing"))
    result = _manage(env, "check")
    assert result.returncode != 0
    assert "MAILADMIN_SECRET_KEY_FILE: cannot read" in result.stderr


PRODUCTION_REQUESTS = """
import json, django
django.setup()
from django.test import Client
c = Client(HTTP_HOST="mail.example.org")
plain = c.get("/accounts/sign-in/")
tls = c.get("/accounts/sign-in/", secure=True)
form = tls.content.decode()
print(json.dumps({
    "plain_status": plain.status_code, "plain_location": plain.get("Location"),
    "tls_status": tls.status_code, "hsts": tls.get("Strict-Transport-Security"),
    "csp": tls.get("Content-Security-Policy"), "cookie_secure": [m["secure"] for m in tls.cookies.values()],
    "evil_host": Client(HTTP_HOST="evil.example.com").get("/accounts/sign-in/", secure=True).status_code,
}))
"""


def test_production_redirects_to_https_and_sends_hsts(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PRODUCTION_REQUESTS],
        cwd=settings.BASE_DIR,
        env=_production_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["plain_status"] == 301
    assert seen["plain_location"] == "https://mail.example.org/accounts/sign-in/"
    assert seen["tls_status"] == 200
    # Preload is the domain owner's decision, hard to undo: only when MAILADMIN_HSTS_PRELOAD asks.
    assert seen["hsts"] == "max-age=31536000; includeSubDomains"
    assert seen["csp"] == STRICT_CSP
    assert seen["cookie_secure"] and all(seen["cookie_secure"])  # the CSRF cookie of the form
    assert seen["evil_host"] == 400


# --- headers ------------------------------------------------------------------------------


def _assert_security_headers(response) -> None:
    assert response["Content-Security-Policy"] == STRICT_CSP
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert "camera=()" in response["Permissions-Policy"] and "geolocation=()" in response["Permissions-Policy"]


def test_strict_content_security_policy_is_the_one_documented() -> None:
    assert CONTENT_SECURITY_POLICY == STRICT_CSP


def test_every_kind_of_response_carries_the_security_headers(sign_in) -> None:
    anonymous = Client()
    _assert_security_headers(anonymous.get("/accounts/sign-in/"))
    _assert_security_headers(anonymous.get("/"))  # redirect to sign-in
    _assert_security_headers(anonymous.get("/no-such-page/"))
    user = sign_in()
    _assert_security_headers(user.get("/"))
    _assert_security_headers(user.get("/accounts/password/"))
    _assert_security_headers(sign_in("end user").get("/audit/"))  # 403


TEMPLATE_DIRS = [settings.BASE_DIR / "templates", *settings.BASE_DIR.glob("*/templates")]
# What a strict CSP (script-src 'self'; style-src 'self') would block in a page.
INLINE_CODE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "inline <script>"),
    (re.compile(r"<style\b", re.I), "<style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "style= attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "inline event handler"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def test_no_template_needs_inline_script_or_style() -> None:
    found = []
    for template_dir in TEMPLATE_DIRS:
        for template in template_dir.rglob("*.html"):
            text = template.read_text()
            name = template.relative_to(settings.BASE_DIR)
            found += [f"{name}: {what}" for rx, what in INLINE_CODE if rx.search(text)]
    assert found == []


def test_scripts_do_not_evaluate_strings() -> None:
    for script in (settings.BASE_DIR / "static").rglob("*.js"):
        text = script.read_text()
        assert not re.search(r"\beval\s*\(|new Function\s*\(|setTimeout\s*\(\s*['\"]", text), script


# --- sessions -------------------------------------------------------------------------------


def test_session_cookie_dies_with_the_browser_and_is_not_readable_by_scripts(sign_in) -> None:
    cookie = sign_in().cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["max-age"] == "" and cookie["expires"] == ""  # gone when the browser closes


def test_session_expires_on_the_server_after_the_configured_age(sign_in) -> None:
    client = sign_in()
    session = Session.objects.get(session_key=client.session.session_key)
    lifetime = session.expire_date - timezone.now()
    assert (
        timedelta(seconds=settings.SESSION_COOKIE_AGE - 60) < lifetime <= timedelta(seconds=settings.SESSION_COOKIE_AGE)
    )
    assert client.get("/").status_code == 200
    # The configured age later: the same cookie signs nobody in.
    session.expire_date = timezone.now() - timedelta(seconds=1)
    session.save()
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/sign-in/")


def test_signing_out_ends_the_session_on_the_server(sign_in) -> None:
    client = sign_in()
    stolen = client.cookies[settings.SESSION_COOKIE_NAME].value
    client.post("/accounts/sign-out/")
    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = stolen
    assert replay.get("/").status_code == 302


def test_signing_in_issues_a_fresh_session_key(make_directory_user) -> None:
    user = make_directory_user()
    client = Client()
    client.get("/accounts/sign-in/")
    client.session.save()
    before = client.session.session_key
    client.post("/accounts/sign-in/", {"username": user.uid, "password": DEMO_PASSWORD})
    assert client.session.session_key != before  # no session fixation


# --- sign-in throttling ------------------------------------------------------------------------


def _sign_in(client: Client, username: str, password: str, **extra: str):
    return client.post("/accounts/sign-in/", {"username": username, "password": password}, **extra)


def test_throttle_counts_an_account_whatever_the_case_of_its_name(make_directory_user) -> None:
    user = make_directory_user()
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        name = user.uid.upper() if n % 2 else user.uid
        _sign_in(Client(), name, "wrong", REMOTE_ADDR="127.0.4.1")
    response = _sign_in(Client(), user.uid, DEMO_PASSWORD, REMOTE_ADDR="127.0.4.1")
    assert "Too many failed sign-ins" in response.content.decode()


def test_throttle_lifts_once_the_window_has_passed(make_directory_user) -> None:
    user = make_directory_user()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        _sign_in(Client(), user.uid, "wrong", REMOTE_ADDR="127.0.5.1")
    assert _sign_in(Client(), user.uid, DEMO_PASSWORD, REMOTE_ADDR="127.0.5.1").status_code == 200
    SignInFailure.objects.update(created_at=timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW + 1))
    assert _sign_in(Client(), user.uid, DEMO_PASSWORD, REMOTE_ADDR="127.0.5.1").status_code == 302


def test_throttled_guesses_are_not_even_checked(make_directory_user) -> None:
    # Otherwise a throttled attacker would still learn which guess was right from timing or text.
    user = make_directory_user()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        _sign_in(Client(), user.uid, "wrong", REMOTE_ADDR="127.0.6.1")
    right = _sign_in(Client(), user.uid, DEMO_PASSWORD, REMOTE_ADDR="127.0.6.1").content.decode()
    wrong = _sign_in(Client(), user.uid, "wrong again", REMOTE_ADDR="127.0.6.1").content.decode()
    assert "Too many failed" in right and "Too many failed" in wrong
    assert "do not match" not in right + wrong


def test_a_client_cannot_dodge_the_address_throttle_with_x_forwarded_for(make_directory_user, settings) -> None:
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = settings.LOGIN_FAILURE_LIMIT
    victim = make_directory_user()
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        _sign_in(Client(), f"guess{n}", "wrong", REMOTE_ADDR="127.0.7.7", HTTP_X_FORWARDED_FOR=f"10.9.9.{n}")
    response = _sign_in(Client(), victim.uid, DEMO_PASSWORD, REMOTE_ADDR="127.0.7.7", HTTP_X_FORWARDED_FOR="10.1.1.1")
    assert "Too many failed" in response.content.decode()


def test_behind_a_trusted_proxy_each_client_has_its_own_throttle(make_directory_user, settings) -> None:
    settings.TRUSTED_PROXIES = ["127.0.8.1"]
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = settings.LOGIN_FAILURE_LIMIT
    victim = make_directory_user()
    proxy = {"REMOTE_ADDR": "127.0.8.1"}
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        _sign_in(Client(), f"guess{n}", "wrong", HTTP_X_FORWARDED_FOR="spoofed, 192.0.2.66", **proxy)
    # The attacker behind the proxy is throttled; another person behind the same proxy is not.
    attacker = _sign_in(Client(), victim.uid, DEMO_PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.66", **proxy)
    assert "Too many failed" in attacker.content.decode()
    assert _sign_in(Client(), victim.uid, DEMO_PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.7", **proxy).status_code == 302
    assert set(SignInFailure.objects.values_list("client_address", flat=True)) == {"192.0.2.66"}
    assert AuditEvent.objects.get(action="sign-in").client_address == "192.0.2.7"


def test_garbage_from_behind_a_proxy_keeps_the_proxy_address(make_directory_user, settings) -> None:
    settings.TRUSTED_PROXIES = ["127.0.8.2"]
    user = make_directory_user()
    response = _sign_in(Client(), user.uid, DEMO_PASSWORD, REMOTE_ADDR="127.0.8.2", HTTP_X_FORWARDED_FOR="<script>")
    assert response.status_code == 302
    assert AuditEvent.objects.get(action="sign-in").client_address == "127.0.8.2"


# --- secrets --------------------------------------------------------------------------------


@pytest.fixture
def all_logs(caplog):
    # Every logger at DEBUG, also those the settings quieten (django_auth_ldap): stricter than production.
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def test_passwords_and_service_secrets_are_never_logged_audited_or_kept(make_directory_user, all_logs, capfd) -> None:
    user = make_directory_user()
    client = Client()
    assert _sign_in(client, user.uid, "Wrong guess 123456").status_code == 200
    assert _sign_in(client, user.uid, DEMO_PASSWORD).status_code == 302
    response = client.post(
        "/accounts/password/",
        {"current_password": DEMO_PASSWORD, "new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD},
    )
    assert response.status_code == 302
    stored_hash = directory.password_hash(user.uid)
    assert stored_hash and stored_hash.startswith("{CRAM-MD5}")
    client.post("/accounts/sign-out/")
    assert _sign_in(Client(), user.uid, NEW_PASSWORD).status_code == 302

    out, err = capfd.readouterr()
    records = "\n".join(f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in all_logs.records)
    audit = "\n".join(repr(row) for row in AuditEvent.objects.values())
    sessions = "\n".join(str(s.get_decoded()) for s in Session.objects.all())
    failures = "\n".join(repr(row) for row in SignInFailure.objects.values())
    everything = "\n".join((out, err, records, audit, sessions, failures))
    assert AuditEvent.objects.filter(action="password.change").exists()
    assert all_logs.records, "nothing was logged at all: the test would not see a leak"
    secrets = {
        "old password": DEMO_PASSWORD,
        "new password": NEW_PASSWORD,
        "wrong guess": "Wrong guess 123456",
        "stored hash": stored_hash.removeprefix("{CRAM-MD5}"),
        "LDAP service password": settings.LDAP_SERVICE_PASSWORD,
        "secret key": settings.SECRET_KEY,
    }
    assert settings.LDAP_SERVICE_PASSWORD  # read from the file the test runner wrote
    leaked = [name for name, secret in secrets.items() if secret in everything]
    assert leaked == []


# --- production database ---------------------------------------------------------------------


def test_the_suite_runs_on_the_database_it_was_asked_for() -> None:
    # CI's PostgreSQL run (MAILADMIN_TEST_DATABASE=postgresql) must not quietly fall back to SQLite.

    wanted = os.environ.get("MAILADMIN_TEST_DATABASE", "sqlite")
    assert connection.vendor == wanted
    if wanted == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version_num")
            assert int(cursor.fetchone()[0]) >= 150000


# --- deployment examples ------------------------------------------------------------------------

DEPLOY_ENV = settings.BASE_DIR / "deploy" / "systemd" / "mailadmin.env"


def _example_env(tmp_path: Path) -> dict[str, str]:
    values = dict(
        line.split("=", 1) for line in DEPLOY_ENV.read_text().splitlines() if line and not line.startswith("#")
    )
    env = _production_env(tmp_path)
    env.update({k: v for k, v in values.items() if k != "MAILADMIN_SECRET_KEY_FILE"})
    for name in [k for k in values if k.endswith("_FILE") and k != "MAILADMIN_SECRET_KEY_FILE"]:
        (tmp_path / name).write_text("not-the-real-one\n")
        env[name] = str(tmp_path / name)
    env["MAILADMIN_STATE_DIR"] = str(tmp_path)
    return env


def test_every_variable_of_the_example_environment_file_is_a_setting() -> None:
    source = (settings.BASE_DIR / "mailadmin" / "settings.py").read_text()
    known = set(re.findall(r'env_(?:str|int|bool|list|secret)\(\s*"([A-Z_]+)"', source))
    known |= {f"{name}_FILE" for name in re.findall(r'env_secret\(\s*"([A-Z_]+)"', source)}
    names = [line.split("=", 1)[0] for line in DEPLOY_ENV.read_text().splitlines() if line and line[0] != "#"]
    assert [name for name in names if name.removeprefix("MAILADMIN_") not in known] == []


def test_the_example_environment_file_passes_check_deploy(tmp_path) -> None:
    result = _manage(_example_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


def test_gunicorn_serves_the_app_behind_a_tls_proxy_with_the_example_settings(tmp_path) -> None:
    env = _example_env(tmp_path)
    env.pop("MAILADMIN_DATABASE_URL")  # the sign-in page needs no database; no PostgreSQL here
    env["MAILADMIN_STATIC_ROOT"] = str(tmp_path / "static")
    collected = _manage(env, "collectstatic", "--noinput", "-v", "0")
    assert collected.returncode == 0, collected.stderr
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "mailadmin.wsgi:application", "-b", f"127.0.0.1:{port}"]
        + ["-w", "1", "--forwarded-allow-ips", "127.0.0.1"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(300):
            if port_open(port) or server.poll() is not None:
                break
            time.sleep(0.05)

        def get_path(path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path, headers={"Host": "mail.example.org", **headers})
            return conn.getresponse()

        def get(headers: dict[str, str]) -> http.client.HTTPResponse:
            return get_path("/accounts/sign-in/", headers)

        plain = get({})
        assert plain.status == 301 and plain.getheader("Location") == "https://mail.example.org/accounts/sign-in/"
        proxied = get({"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.5"})
        assert proxied.status == 200
        assert proxied.getheader("Content-Security-Policy") == STRICT_CSP
        assert proxied.getheader("Strict-Transport-Security", "").startswith("max-age=31536000")
        assert "Sign in" in proxied.read().decode()
        static = get_path("/static/css/mailadmin.css", {"X-Forwarded-Proto": "https"})
        assert static.status == 200 and static.getheader("Content-Security-Policy") == STRICT_CSP
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
    assert b"Traceback" not in errors, errors.decode()[-3000:]


def test_passwords_an_admin_sets_are_never_logged_or_audited(sign_in, make_directory_user, all_logs, capfd) -> None:
    admin = sign_in("admin")
    target = make_directory_user()
    created_uid = f"s{os.urandom(3).hex()}"
    first, reset = "Handed over in person 4711", "Another handed over 0815"
    try:
        response = admin.post(
            "/directory/new/",
            {
                "uid": created_uid,
                "name": "Secret Tester",
                "mail": f"{created_uid}@{settings.MAIL_DOMAIN}",
                "new_password": first,
                "new_password_again": first,
            },
        )
        assert response.status_code == 302, response.content.decode()[:2000]
        response = admin.post(
            f"/directory/users/{target.uid}/password/", {"new_password": reset, "new_password_again": reset}
        )
        assert response.status_code == 302
        hashes = [directory.password_hash(created_uid), directory.password_hash(target.uid)]
    finally:
        directory.delete_user(created_uid)
    assert AuditEvent.objects.filter(action__in=["account.create", "account.password-reset"]).count() == 2
    out, err = capfd.readouterr()
    records = "\n".join(f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in all_logs.records)
    audit = "\n".join(repr(row) for row in AuditEvent.objects.values())
    everything = "\n".join((out, err, records, audit))
    secrets = [first, reset, *(h.removeprefix("{CRAM-MD5}") for h in hashes if h)]
    assert len(secrets) == 4
    assert [secret for secret in secrets if secret in everything] == []


def test_debug_is_off_when_the_variable_is_unset(tmp_path) -> None:
    env = _production_env(tmp_path)
    del env["MAILADMIN_DEBUG"]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
