"""Shared fixtures. The services are started by `python -m localservices test` (scripts/test);
a missing service fails the run at the start, nothing skips."""

import secrets
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from hypothesis import settings as hypothesis_settings

from accounts import directory
from localservices.process import port_open
from mfa import sealing, services, totp
from mfa.models import TotpDevice

DEMO_PASSWORD = "correct horse battery staple"

# The same examples on every run: a property test that fails does so for everyone, every time.
hypothesis_settings.register_profile("mailadmin", derandomize=True, database=None, deadline=None)
hypothesis_settings.load_profile("mailadmin")


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [
        name
        for name, port in (
            ("slapd", settings.LDAP_PORT),
            ("redis", settings.REDIS_PORT),
            ("postfix", settings.SMTP_PORT),
        )
        if not port_open(port)
    ]
    if missing:
        raise pytest.UsageError(
            f"services not running: {', '.join(missing)}. Run the suite with scripts/test "
            "(it starts private slapd, Redis and Postfix)."
        )


@pytest.fixture
def make_directory_user() -> Iterator[Callable[..., directory.DirectoryUser]]:
    """Create LDAP users for one test (removed afterwards). Returns the DirectoryUser."""
    created: list[str] = []

    def make(
        role: str = "end user",
        uid: str | None = None,
        password: str | None = DEMO_PASSWORD,
        mail: str | None = None,
    ) -> directory.DirectoryUser:
        uid = uid or f"u{secrets.token_hex(4)}"
        user = directory.create_user(
            uid=uid,
            cn=f"Test {uid}",
            sn=uid,
            given_name="Test",
            mail=mail or f"{uid}@{settings.MAIL_DOMAIN}",
            password=password,
        )
        created.append(uid)
        if role == "admin":
            directory.add_to_group(uid, settings.LDAP_ADMIN_GROUP_DN)
        elif role == "helpdesk":
            directory.add_to_group(uid, settings.LDAP_HELPDESK_GROUP_DN)
        return user

    yield make
    for uid in created:
        directory.delete_user(uid)


def give_second_factor(uid: str) -> str:
    """An authenticator app for this person (who has signed in once), set up directly; its secret."""

    secret = totp.new_secret()
    TotpDevice.objects.create(user=User.objects.get(username=uid), sealed_secret=sealing.seal(secret))
    return secret


def pass_second_factor(client: Client, uid: str) -> HttpResponse:
    """After the password was accepted and the second factor is asked for: answer it (with an
    authenticator app set up here if the person has none, and a fresh recovery code, which
    works however often the same person signs in within one TOTP step)."""

    user = User.objects.get(username=uid)
    if not services.has_second_factor(user):
        give_second_factor(uid)
    code = services.new_recovery_codes(None, user)[0]
    response = client.post(reverse("mfa:verify"), {"code": code})
    assert response.status_code == 302 and not response["Location"].startswith(reverse("mfa:verify")), response
    return response


def sign_in_client(client: Client, uid: str, password: str = DEMO_PASSWORD) -> HttpResponse:
    """Through the real sign-in form, and the second factor when it is asked for."""
    response = client.post("/accounts/sign-in/", {"username": uid, "password": password})
    assert response.status_code == 302, response.content.decode()[:2000]
    if response["Location"].startswith(reverse("mfa:verify")):
        response = pass_second_factor(client, uid)
    return response


@pytest.fixture
def sign_in(db: None, make_directory_user: Callable[..., directory.DirectoryUser]) -> Callable[..., Client]:
    """sign_in("admin") -> a Client signed in through the real sign-in form as a new user of that
    role (with a second factor where the policy asks for one)."""

    def login(role: str = "end user", **kwargs: object) -> Client:
        user = make_directory_user(role=role, **kwargs)
        client = Client()
        sign_in_client(client, user.uid, str(kwargs.get("password", DEMO_PASSWORD)))
        client.directory_user = user  # type: ignore[attr-defined]
        return client

    return login
