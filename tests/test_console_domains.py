"""The domain list: mailboxes (from the directory), aliases and catch-all targets per domain,
edit and delete from the row, and the kind of a new domain chosen explicitly."""

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from aliases.models import Alias, Domain

pytestmark = pytest.mark.django_db


def _row(html: str, name: str) -> str:
    start = html.index(f'<td data-label="Domain" class="mono">{name}</td>')
    return html[start : html.index("</tr>", start)]


def _cell(row: str, label: str) -> str:
    match = re.search(rf'data-label="{label}"[^>]*>(.*?)</td>', row, re.S)
    assert match, label
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def test_the_list_counts_mailboxes_aliases_and_catch_all_targets_per_domain(
    sign_in: Any, make_directory_user: Any
) -> None:
    admin: Client = sign_in("admin")
    for n in range(3):
        make_directory_user(mail=f"person{n}@staff.example")
    forwarding = Domain.objects.create(name="fwd.example", is_alias_domain=True)
    Domain.objects.create(name="staff.example", catchall_destinations="a@outside.example,b@outside.example")
    owner = User.objects.create(username="someowner")
    for n in range(4):
        Alias.objects.create(owner=owner, local_part=f"x{n}", domain=forwarding)
    html = admin.get("/aliases/domains/").content.decode()
    staff, fwd = _row(html, "staff.example"), _row(html, "fwd.example")
    assert (_cell(staff, "Mailboxes"), _cell(staff, "Aliases")) == ("3", "0")
    assert _cell(staff, "Catch-all").startswith("2 targets:")
    assert (_cell(fwd, "Mailboxes"), _cell(fwd, "Aliases"), _cell(fwd, "Catch-all")) == ("0", "4", "none")
    domain = Domain.objects.get(name="fwd.example")
    assert f'href="/aliases/domains/{domain.pk}/"' in fwd and f'href="/aliases/domains/{domain.pk}/delete/"' in fwd


def test_the_delete_from_the_list_still_checks_what_uses_the_domain(sign_in: Any) -> None:
    admin: Client = sign_in("admin")
    used = Domain.objects.create(name="used.example", is_alias_domain=True)
    Alias.objects.create(owner=User.objects.create(username="o1"), local_part="x", domain=used)
    page = admin.get(f"/aliases/domains/{used.pk}/delete/").content.decode()
    assert "is in use" in page and "1 alias use it" in page
    admin.post(f"/aliases/domains/{used.pk}/delete/")
    assert Domain.objects.filter(pk=used.pk).exists()


def test_a_new_domain_needs_its_kind_chosen(sign_in: Any) -> None:
    admin: Client = sign_in("admin")
    form = admin.get("/aliases/domains/new/").content.decode()
    assert 'type="radio" name="kind" value="mailbox"' in form and "checked" not in form
    response = admin.post("/aliases/domains/new/", {"name": "undecided.example", "catchall_destinations": ""})
    assert response.status_code == 200 and "This field is required." in response.content.decode()
    assert not Domain.objects.filter(name="undecided.example").exists()
    admin.post("/aliases/domains/new/", {"name": "decided.example", "kind": "alias"})
    assert Domain.objects.get(name="decided.example").is_alias_domain


def test_a_domain_page_shows_its_kind_chosen(sign_in: Any) -> None:
    domain = Domain.objects.create(name="kept.example", is_alias_domain=True)
    page = sign_in("admin").get(f"/aliases/domains/{domain.pk}/").content.decode()
    assert re.search(r'type="radio" name="kind" value="alias"[^>]*checked', page)


def test_mailbox_counts_follow_the_directory(sign_in: Any, make_directory_user: Any) -> None:
    admin: Client = sign_in("admin")
    Domain.objects.create(name="growing.example")
    make_directory_user(mail="first@growing.example")
    assert _cell(_row(admin.get("/aliases/domains/").content.decode(), "growing.example"), "Mailboxes") == "1"
    make_directory_user(mail="second@growing.example")
    assert _cell(_row(admin.get("/aliases/domains/").content.decode(), "growing.example"), "Mailboxes") == "2"
