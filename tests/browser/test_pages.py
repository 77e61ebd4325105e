"""Every main page, at desktop and phone widths: no sideways scrolling on a phone, nothing the
Content Security Policy blocks, one current navigation link. Screenshots of each land in
test-artifacts/screenshots/pages/ for people to look at."""

import secrets
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from activity.models import AliasDailyCount, AliasSenderDomain, LeakFlag, SenderBlock
from aliases.models import Alias, Domain
from api.models import ApiToken
from audit.models import AuditEvent
from outofoffice.models import VacationReply
from tests.browser.conftest import ARTIFACTS, DESKTOP, PHONE
from trail.models import Delivery

pytestmark = pytest.mark.browser

PAGES = {
    "end user": [
        "/",
        "/aliases/",
        "/aliases/new/site/",
        "/out-of-office/vacation/",
        "/handover/",
        "/handover/edit/",
        "/handover/shared/",
        "/accounts/password/",
        "/trail/",
        "/tokens/",
        "/tokens/help/",
        "/activity/blocks/",
        "/explain/",
    ],
    "helpdesk": [
        "/",
        "/directory/",
        "/out-of-office/helpdesk/?q=a",
        "/trail/",
        "/explain/?address=a-very-long-recipient-name.with.dots@subdomain.example-partner.co.uk",
        f"/explain/?address=news1@{settings.ALIAS_DOMAIN}",
    ],
    "admin": [
        "/",
        "/directory/?q=a",
        "/aliases/domains/",
        "/aliases/publication/",
        "/audit/",
        "/bulk/",
        "/tokens/all/",
        "/limits/",
        "/limits/senders/",
        "/activity/organisation/",
    ],
}


def _populate(owner: User) -> None:
    domain, _ = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})
    sites = ["shop.example.com", "news.example.net", "forum.example.org", "a-very-long-site-name.example.co.uk"]
    Alias.objects.bulk_create(
        Alias(
            owner=owner,
            local_part=site.split(".")[0].replace("-", "") + f"{i}",
            domain=domain,
            kind=Alias.Kind.PER_SITE,
            site=site,
            label="newsletter" if i % 2 else "",
            enabled=i != 1,
        )
        for i, site in enumerate(sites)
    )
    _activity(owner)
    VacationReply.objects.update_or_create(
        uid=owner.username,
        defaults={
            "address": owner.email,
            "enabled": True,
            "subject": "Away",
            "body": "Back soon.",
            "ends_at": timezone.now() + timedelta(days=5),
        },
    )
    for name, scope in (("Bitwarden on my laptop", "manage"), ("Inventory script", "read")):
        ApiToken.objects.create(
            owner=owner,
            name=name,
            scope=scope,
            digest=secrets.token_hex(32),
            display_prefix="mat_" + secrets.token_hex(3),
        )
    AuditEvent.objects.bulk_create(
        AuditEvent(action=action, actor_name=owner.username, target=target, detail=detail, client_address="127.0.0.1")
        for action, target, detail in [
            ("alias.create", "shop0@" + settings.ALIAS_DOMAIN, "site shop.example.com"),
            ("alias.disable", "news1@" + settings.ALIAS_DOMAIN, ""),
            ("vacation.set", owner.username, "enabled, until next week"),
            ("suspension.suspend", "mallory", "Sent 4000 spam messages from a phished password; see ticket 4711 " * 2),
        ]
    )
    # The delivery trail: the owner's mail, with Postfix's longest kinds of text.
    Delivery.objects.bulk_create(
        Delivery(logged_at=timezone.now(), host="mx1", queue_id="4A1B2C3D4E", status=status, **fields)
        for status, fields in [
            ("sent", {"recipient": owner.email, "original_recipient": f"shop0@{settings.ALIAS_DOMAIN}"}),
            (
                "rejected",
                {
                    "recipient": f"news1@{settings.ALIAS_DOMAIN}",
                    "reply": "550 5.1.1 <news1@alias>: Recipient address rejected: This address is disabled",
                },
            ),
            (
                "bounced",
                {
                    "sender": owner.email,
                    "recipient": "a-very-long-recipient-name.with.dots@subdomain.example-partner.co.uk",
                    "reply": "host mx.example-partner.co.uk[203.0.113.9] said: 550 5.1.1 "
                    "<a-very-long-recipient-name.with.dots@subdomain.example-partner.co.uk>: Recipient address "
                    "rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)",
                },
            ),
            (
                "deferred",
                {
                    "sender": owner.email,
                    "recipient": "friend@down.example",
                    "reply": "connect to mx.down.example[203.0.113.50]:25: Connection refused",
                },
            ),
        ]
    )


def _activity(owner: User) -> None:
    """Mail counts, a sender domain, a leak flag and blocks, as the policy service leaves them."""
    now = timezone.now()
    shop = Alias.objects.filter(owner=owner).order_by("id").first()
    assert shop is not None
    AliasDailyCount.objects.create(alias=shop, day=now.date(), accepted=42, refused=3, last_at=now)
    AliasSenderDomain.objects.create(
        alias=shop, domain="mailer.unrelated-shop.example", last_sender="news@mailer.unrelated-shop.example",
        accepted=7, refused=0, first_at=now, last_at=now,
    )  # fmt: skip
    LeakFlag.objects.create(
        alias=shop, registrable_domain="unrelated-shop.example", sender_domain="mailer.unrelated-shop.example",
        flagged_at=now,
    )  # fmt: skip
    SenderBlock.objects.create(scope="alias", owner=owner, alias=shop, sender="pest@nuisance.example", stopped=12)
    SenderBlock.objects.create(scope="account", owner=owner, sender="spam.example", is_domain=True)
    SenderBlock.objects.get_or_create(scope="organisation", sender="junk.example", is_domain=True)


@pytest.mark.parametrize("role", PAGES)
def test_main_pages_look_finished_at_desktop_and_phone_widths(page: Page, sign_in_as, role) -> None:
    user = sign_in_as(role)
    owner = User.objects.get(username=user.uid)
    _populate(owner)
    # The page of the alias with activity, a leak flag and blocks (its id is known only now).
    paths = [*PAGES[role], *(f"/aliases/{a.pk}/" for a in Alias.objects.filter(owner=owner).order_by("id")[:1])]
    folder = ARTIFACTS / "screenshots" / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    problems = []
    for width_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        for path in paths:
            response = page.goto(path)
            assert response is not None and response.status == 200, path
            name = f"{role.replace(' ', '-')}{path.replace('/', '_').replace('?', '-')}-{width_name}.png"
            page.screenshot(path=str(folder / name), full_page=True)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            if overflow > 0:
                problems.append(f"{path} scrolls sideways by {overflow}px at {width_name} width")
            if page.locator("[aria-current=page]").count() != 1:
                problems.append(f"{path}: not exactly one current navigation link")
    assert problems == []
    assert page.console_problems == []


def test_sign_in_page_looks_finished_at_desktop_and_phone_widths(page: Page) -> None:
    folder = ARTIFACTS / "screenshots" / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    for width_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.goto("/accounts/sign-in/")
        page.get_by_role("button", name="Sign in").click()  # empty: both fields say what is missing
        page.screenshot(path=str(folder / f"sign-in-{width_name}.png"), full_page=True)
        assert page.locator(".field-error").count() == 2
        assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    expect(page.get_by_label("User name")).to_have_attribute("aria-invalid", "true")
    assert page.console_problems == []
