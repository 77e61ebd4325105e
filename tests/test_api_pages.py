"""The token pages: a token is shown once and stored only as a hash; people revoke their own,
admins anyone's, helpdesk nobody's."""

import re

import pytest
from django.contrib.auth.models import User

from api.models import ApiToken
from api.services import digest_of
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"mat_[A-Za-z0-9_-]{43}")


def make(client, name: str = "Bitwarden", scope: str = "manage") -> str:
    response = client.post("/tokens/", {"name": name, "scope": scope, "expires_on": ""})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    found = TOKEN.findall(response.content.decode())
    assert len(set(found)) == 1, "the new token is shown"
    return found[0]


def test_a_new_token_is_shown_once_and_only_its_hash_is_kept(sign_in) -> None:
    client = sign_in()
    raw = make(client)
    token = ApiToken.objects.get(owner__username=client.directory_user.uid)
    assert token.digest == digest_of(raw) and raw not in repr(list(ApiToken.objects.values()))
    page = client.get("/tokens/").content.decode()
    assert raw not in page and "Bitwarden" in page and token.display_prefix in page
    event = AuditEvent.objects.get(action="api_token.create")
    assert raw not in event.detail and "Bitwarden" in event.detail
    assert client.get("/api/mailadmin/token", HTTP_AUTHORIZATION=f"Bearer {raw}").json()["name"] == "Bitwarden"


def test_people_revoke_their_own_tokens_and_not_others(sign_in) -> None:
    owner, other = sign_in(), sign_in()
    raw = make(owner)
    token = ApiToken.objects.get(digest=digest_of(raw))
    assert other.post(f"/tokens/{token.pk}/revoke/").status_code == 404
    assert owner.get(f"/tokens/{token.pk}/revoke/").status_code == 200  # the confirmation
    assert owner.post(f"/tokens/{token.pk}/revoke/")["Location"] == "/tokens/"
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by.username == owner.directory_user.uid
    assert owner.get("/api/mailadmin/token", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401


def test_admins_list_and_revoke_anyones_token_and_helpdesk_cannot(sign_in) -> None:
    owner, helpdesk, admin, other_admin = sign_in(), sign_in("helpdesk"), sign_in("admin"), sign_in("admin")
    raw = make(owner, name="laptop")
    admins_token = ApiToken.objects.get(digest=digest_of(make(other_admin, name="admin script")))
    token = ApiToken.objects.get(digest=digest_of(raw))
    assert helpdesk.get("/tokens/all/").status_code == 403
    assert helpdesk.post(f"/tokens/all/{token.pk}/revoke/").status_code == 403
    listing = admin.get("/tokens/all/", {"q": owner.directory_user.uid}).content.decode()
    assert "laptop" in listing and "admin script" not in listing
    assert admin.post(f"/tokens/all/{token.pk}/revoke/")["Location"] == "/tokens/all/"
    assert admin.post(f"/tokens/all/{admins_token.pk}/revoke/").status_code == 302  # admins act on anyone
    token.refresh_from_db()
    assert token.revoked_by == User.objects.get(username=admin.directory_user.uid)
    event = AuditEvent.objects.filter(action="api_token.revoke", target=owner.directory_user.uid).get()
    assert event.actor_name == admin.directory_user.uid


def test_a_token_name_with_a_line_break_is_refused(sign_in) -> None:
    client = sign_in()
    response = client.post("/tokens/", {"name": "a\nb", "scope": "manage", "expires_on": ""})
    assert response.status_code == 200 and "on one line" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_the_api_page_says_what_to_enter_in_bitwarden(sign_in) -> None:
    page = sign_in().get("/tokens/help/").content.decode()
    assert "http://testserver" in page and "/api/alias/random/new" in page and "/api/v1/aliases" in page
