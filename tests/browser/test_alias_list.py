"""The alias list in Chromium: the pasted address finds its alias, the switch in a row keeps
the list as it was (with scripts and without), several aliases go off at once."""

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect

from aliases.models import Alias, Domain

pytestmark = pytest.mark.browser


@pytest.fixture
def alias_domain(db) -> Domain:
    domain, _ = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})
    return domain


@pytest.fixture
def owner_with_aliases(sign_in_as, alias_domain) -> dict[str, Alias]:
    user = sign_in_as("end user")
    owner = User.objects.get(username=user.uid)
    names = {
        "shop": ("shopexamplecom", "shop.example.com"),
        "shop2": ("shopexamplecom2", "shop.example.com"),
        "leak1": ("leakyone", "leaky-one.example"),
        "leak2": ("leakytwo", "leaky-two.example"),
        "leak3": ("leakythree", "leaky-three.example"),
    }
    return {
        key: Alias.objects.create(owner=owner, local_part=local_part, domain=alias_domain, site=site)
        for key, (local_part, site) in names.items()
    }


def _rows(page: Page):
    return page.locator("table.alias-list tbody tr")


def test_the_whole_address_pasted_from_a_mail_finds_its_alias(page: Page, owner_with_aliases) -> None:
    page.goto("/aliases/")
    expect(_rows(page)).to_have_count(5)
    page.get_by_label("Search").fill('"Shop newsletter" <ShopExampleCom@alias.example.org>')
    page.get_by_role("button", name="Search").click()
    expect(_rows(page)).to_have_count(1)
    expect(_rows(page).first).to_contain_text("shopexamplecom@alias.example.org")
    # The copy button of the row copies the address.
    _rows(page).first.get_by_role("button", name="Copy shopexamplecom@alias.example.org").click()
    assert page.evaluate("navigator.clipboard.readText()") == "shopexamplecom@alias.example.org"
    assert page.console_problems == []  # type: ignore[attr-defined]


def test_the_switch_in_a_row_keeps_the_search_without_a_reload(page: Page, owner_with_aliases) -> None:
    page.goto("/aliases/?q=leaky&sort=-site")
    expect(_rows(page)).to_have_count(3)
    page.evaluate("window.stillTheSamePage = true")
    row = page.locator(f"#alias-{owner_with_aliases['leak2'].pk}")
    row.get_by_role("button", name="Switch off").click()
    expect(row.get_by_role("button", name="Switch on")).to_be_visible()
    expect(row).to_contain_text("off")
    expect(page.locator("#alias-status")).to_contain_text("leakytwo@alias.example.org is switched off")
    assert page.evaluate("window.stillTheSamePage") is True  # no navigation happened
    assert page.url.endswith("/aliases/?q=leaky&sort=-site")
    expect(page.get_by_label("Search")).to_have_value("leaky")
    expect(_rows(page)).to_have_count(3)
    assert not Alias.objects.get(pk=owner_with_aliases["leak2"].pk).enabled
    # And back on, the same way.
    row.get_by_role("button", name="Switch on").click()
    expect(row.get_by_role("button", name="Switch off")).to_be_visible()
    assert Alias.objects.get(pk=owner_with_aliases["leak2"].pk).enabled
    assert page.console_problems == []  # type: ignore[attr-defined]


def test_without_scripts_the_switch_comes_back_to_the_same_search(
    page: Page, browser: Browser, live_server, owner_with_aliases
) -> None:
    plain = browser.new_context(
        base_url=str(live_server), java_script_enabled=False, storage_state=page.context.storage_state()
    )
    try:
        tab = plain.new_page()
        tab.goto("/aliases/?q=leaky&sort=-site")
        tab.locator(f"#alias-{owner_with_aliases['leak1'].pk}").get_by_role("button", name="Switch off").click()
        tab.wait_for_load_state()
        assert tab.url.endswith("/aliases/?q=leaky&sort=-site")
        expect(tab.locator(".messages")).to_contain_text("leakyone@alias.example.org is switched off")
        expect(tab.get_by_label("Search")).to_have_value("leaky")
        assert not Alias.objects.get(pk=owner_with_aliases["leak1"].pk).enabled
    finally:
        plain.close()


def test_ticked_aliases_are_switched_off_together_after_one_question(page: Page, owner_with_aliases) -> None:
    page.goto("/aliases/?q=leaky")
    for key in ("leak1", "leak3"):
        page.get_by_label(f"Select {owner_with_aliases[key].address}").check()
    page.locator("#alias-bulk").get_by_role("button", name="Switch off").click()
    expect(page.locator(".messages")).to_contain_text("2 addresses switched off.")
    assert page.dialogs == ["Switch off the selected addresses? Mail to them will be refused."]  # type: ignore[attr-defined]
    assert page.url.endswith("/aliases/?q=leaky")
    off = set(Alias.objects.filter(enabled=False).values_list("local_part", flat=True))
    assert off == {"leakyone", "leakythree"}
    assert page.console_problems == []  # type: ignore[attr-defined]


def test_a_second_address_for_a_site_is_offered_the_first_before_it_is_made(page: Page, owner_with_aliases) -> None:
    page.goto("/aliases/")
    page.get_by_label("Site").fill("https://www.shop.example.com/account")
    page.get_by_role("button", name="Create address").click()
    offer = page.locator(".existing-alias")
    expect(offer).to_contain_text("shopexamplecom2@alias.example.org")
    expect(page.locator(".field-error")).to_contain_text("You already have")
    offer.get_by_role("button", name="Copy it").click()
    assert page.evaluate("navigator.clipboard.readText()") == "shopexamplecom2@alias.example.org"
    assert Alias.objects.filter(site="shop.example.com").count() == 2
    offer.get_by_role("button", name="Make another one anyway").click()
    expect(page.locator(".messages")).to_contain_text("shopexamplecom3@alias.example.org")
    assert Alias.objects.filter(site="shop.example.com").count() == 3
    assert page.console_problems == []  # type: ignore[attr-defined]
