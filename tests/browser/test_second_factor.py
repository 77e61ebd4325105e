"""The second factor in Chromium: an authenticator app (codes computed here), a passkey through
Chromium's virtual authenticator (DevTools WebAuthn domain), and a recovery code, once."""

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import CDPSession, Page, expect

from mfa import services, totp
from mfa.models import Passkey
from tests.conftest import DEMO_PASSWORD, give_second_factor

pytestmark = pytest.mark.browser


def password(page: Page, uid: str) -> None:
    page.goto("/accounts/sign-in/")
    page.get_by_label("User name").fill(uid)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/accounts/sign-in/"))


def virtual_authenticator(page: Page) -> tuple[CDPSession, str]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def enrol_passkey(page: Page, uid: str, name: str) -> None:
    """Password, then a passkey as the first factor, from the enrolment page."""
    password(page, uid)
    page.get_by_role("link", name="Use a passkey or security key").click()
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Add passkey").click()


def test_an_admin_enrols_an_authenticator_app_and_signs_in_with_its_codes(
    page: Page, make_directory_user: Callable[..., object]
) -> None:
    admin = make_directory_user(role="admin")
    password(page, admin.uid)  # type: ignore[attr-defined]
    expect(page.get_by_role("heading", level=1)).to_have_text("Set up a second factor")
    # Nothing else is reachable before enrolment.
    page.goto("/audit/")
    expect(page).to_have_url(re.compile(r"/second-factor/enrol/"))

    page.get_by_role("link", name="Use an authenticator app").click()
    expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    secret = page.locator("code.secret").inner_text().replace(" ", "")
    step = totp.step_at()
    page.get_by_role("textbox", name="Code").fill(totp.code_for(secret, step))
    page.get_by_role("button", name="Confirm").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Second factor ready")
    expect(page.locator(".code-list li")).to_have_count(10)
    page.get_by_role("link", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hello")
    assert page.console_problems == []  # type: ignore[attr-defined]

    sign_out(page)
    password(page, admin.uid)  # type: ignore[attr-defined]
    expect(page.get_by_role("heading", level=1)).to_have_text("Second factor")
    page.get_by_label("Code").fill(totp.code_for(secret, step))  # spent at enrolment
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("was used already")).to_be_visible()
    page.get_by_label("Code").fill(totp.code_for(secret, step + 1))
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hello")
    page.goto("/audit/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Audit")


def test_a_passkey_is_enrolled_and_signs_in_through_the_virtual_authenticator(
    page: Page, make_directory_user: Callable[..., object]
) -> None:
    cdp, authenticator = virtual_authenticator(page)
    admin = make_directory_user(role="admin")
    enrol_passkey(page, admin.uid, "Virtual key")  # type: ignore[attr-defined]

    expect(page.get_by_role("heading", level=1)).to_have_text("Second factor ready")
    expect(page.get_by_text("Your passkey “Virtual key” is set up")).to_be_visible()
    credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert len(credentials) == 1
    stored = Passkey.objects.get(user__username=admin.uid)  # type: ignore[attr-defined]
    assert stored.name == "Virtual key" and stored.credential_id == credentials[0]["credentialId"].rstrip("=").replace(
        "+", "-"
    ).replace("/", "_")
    page.get_by_role("link", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hello")

    sign_out(page)
    password(page, admin.uid)  # type: ignore[attr-defined]
    expect(page.get_by_role("heading", level=1)).to_have_text("Second factor")
    page.get_by_role("button", name="Use a passkey").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hello")
    stored.refresh_from_db()
    assert stored.last_used_at is not None
    assert page.console_problems == []  # type: ignore[attr-defined]

    # A second passkey, named, from the Second factor page.
    page.get_by_role("link", name="Second factor").click()
    page.get_by_role("link", name="Add a passkey").click()
    page.get_by_label("Name").fill("Second key")
    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": authenticator})
    virtual_authenticator(page)
    page.get_by_role("button", name="Add passkey").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Second factor ready")
    page.goto("/second-factor/")
    expect(page.get_by_text("Second key")).to_be_visible()
    assert Passkey.objects.filter(user__username=admin.uid).count() == 2  # type: ignore[attr-defined]


def test_a_passkey_of_another_authenticator_does_not_sign_in(
    page: Page, make_directory_user: Callable[..., object]
) -> None:
    cdp, authenticator = virtual_authenticator(page)
    admin = make_directory_user(role="admin")
    enrol_passkey(page, admin.uid, "Lost key")  # type: ignore[attr-defined]
    page.get_by_role("link", name="Continue").click()
    sign_out(page)
    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": authenticator})
    virtual_authenticator(page)  # a different key, which holds no credential for this site

    password(page, admin.uid)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Use a passkey").click()
    expect(page.get_by_text("No passkey was used")).to_be_visible()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/second-factor/verify/"))


def test_a_recovery_code_works_once(page: Page, make_directory_user: Callable[..., object]) -> None:
    admin = make_directory_user(role="admin")
    password(page, admin.uid)  # type: ignore[attr-defined]
    give_second_factor(admin.uid)  # type: ignore[attr-defined]
    codes = services.new_recovery_codes(None, User.objects.get(username=admin.uid))  # type: ignore[attr-defined]
    page.goto("/second-factor/verify/")
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hello")
    expect(page.get_by_text("You used a recovery code; 9 left")).to_be_visible()

    sign_out(page)
    password(page, admin.uid)  # type: ignore[attr-defined]
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("That recovery code is not right, or was used already.")).to_be_visible()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/second-factor/verify/"))
