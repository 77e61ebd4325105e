"""The alias API with personal tokens: what a client sees, against the real slapd and SQL."""

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django.utils import timezone

from accounts import directory
from aliases.models import AliasTombstone, Domain
from api import services
from api.models import ApiToken
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def make_token(owner: User, scope: str = ApiToken.Scope.MANAGE, **kwargs: object) -> str:
    request = RequestFactory().post("/tokens/")
    request.user = owner
    _, raw = services.issue_token(
        request, owner, name=kwargs.pop("name", "test"), scope=scope, expires_at=kwargs.pop("expires_at", None)
    )
    return raw


def bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@pytest.fixture
def domain() -> Domain:
    found, _ = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})
    return found


@pytest.fixture
def person(make_directory_user: Callable[..., directory.DirectoryUser], domain: Domain) -> Callable[..., User]:
    def make(role: str = "end user") -> User:
        entry = make_directory_user(role=role)
        return User.objects.create(username=entry.uid, email=entry.mail)

    return make


def call(method: str, path: str, raw: str | None = None, body: object = None, **headers: str):
    client = Client()
    extra = {**(bearer(raw) if raw else {}), **headers}
    data = json.dumps(body) if body is not None else None
    return getattr(client, method.lower())(path, data=data, content_type="application/json", **extra)


def test_a_token_makes_lists_reads_changes_and_deletes_its_owners_aliases(person) -> None:
    owner = person()
    raw = make_token(owner)
    made = call("POST", "/api/mailadmin/aliases", raw, {"kind": "site", "site": "https://www.Shop.example.com/x"})
    assert made.status_code == 201, made.content
    alias = made.json()
    assert alias["address"] == f"shopexamplecom@{settings.ALIAS_DOMAIN}" and alias["site"] == "shop.example.com"
    listed = call("GET", "/api/mailadmin/aliases?q=shop", raw).json()
    assert [item["address"] for item in listed["items"]] == [alias["address"]] and listed["count"] == 1
    day = (timezone.localdate() + timedelta(days=10)).isoformat()
    changed = call("PATCH", f"/api/mailadmin/aliases/{alias['id']}", raw, {"note": "shopping", "expires_on": day})
    assert changed.status_code == 200 and changed.json()["note"] == "shopping" and changed.json()["expires_at"]
    assert call("POST", f"/api/mailadmin/aliases/{alias['id']}/disable", raw).json()["enabled"] is False
    assert call("GET", f"/api/mailadmin/aliases/{alias['id']}", raw).json()["live"] is False
    assert call("DELETE", f"/api/mailadmin/aliases/{alias['id']}", raw).json() == {"deleted": alias["address"]}
    assert AliasTombstone.objects.filter(address=alias["address"]).exists()
    actions = list(AuditEvent.objects.filter(actor_name=owner.username).values_list("action", flat=True))
    assert {"alias.create", "alias.update", "alias.disable", "alias.delete", "api_token.create"} <= set(actions)
