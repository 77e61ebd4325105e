"""The alias API with personal tokens: what a client sees, against the real slapd and SQL."""

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import directory, suspension
from activity.models import AliasDailyCount
from aliases.forms import CustomAliasForm
from aliases.models import Alias, AliasTombstone, Domain
from api import services
from api.models import ApiToken
from audit.models import AuditEvent
from localservices.process import free_port
from localservices.slapd import Slapd
from mailadmin import counters

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


def test_the_list_carries_the_activity_figures_and_a_second_alias_for_a_site_is_asked_for(person) -> None:
    owner = person()
    raw = make_token(owner)
    first = call("POST", "/api/mailadmin/aliases", raw, {"kind": "site", "site": "shop.example.com"}).json()
    again = call("POST", "/api/mailadmin/aliases", raw, {"kind": "site", "site": "shop.example.com"})
    assert again.status_code == 400 and first["address"] in again.json()["error"]
    second = call("POST", "/api/mailadmin/aliases", raw, {"kind": "site", "site": "shop.example.com", "another": True})
    assert second.status_code == 201 and second.json()["address"] != first["address"]
    now = timezone.now()
    AliasDailyCount.objects.create(alias_id=first["id"], day=now.date(), accepted=7, refused=2, last_at=now)
    items = {item["id"]: item for item in call("GET", "/api/mailadmin/aliases", raw).json()["items"]}
    assert (items[first["id"]]["mails_30d"], items[first["id"]]["refused_30d"]) == (7, 2)
    assert items[first["id"]]["last_mail_at"] and items[second.json()["id"]]["mails_30d"] == 0


def test_another_persons_alias_is_not_found_and_stays_untouched(person) -> None:
    owner, stranger = person(), person("admin")
    made = call("POST", "/api/mailadmin/aliases", make_token(owner), {"kind": "random"}).json()
    theirs = make_token(stranger)
    path = f"/api/mailadmin/aliases/{made['id']}"
    for method, suffix, body in (
        ("GET", "", None),
        ("PATCH", "", {"note": "mine now"}),
        ("POST", "/disable", None),
        ("DELETE", "", None),
    ):
        response = call(method, path + suffix, theirs, body)
        assert response.status_code == 404 and response.json() == {"error": "No such alias."}
    alias = Alias.objects.get(pk=made["id"])
    assert alias.enabled and alias.label == "" and alias.owner == owner


def test_a_refused_value_gets_the_forms_own_message_and_changes_nothing(person) -> None:
    owner = person()
    form = CustomAliasForm(owner, {"local_part": "postmaster", "domain": ""})
    assert not form.is_valid()
    response = call("POST", "/api/mailadmin/aliases", make_token(owner), {"kind": "custom", "local_part": "postmaster"})
    assert response.status_code == 400
    assert response.json() == {
        "error": form.errors["local_part"][0],
        "fields": {"local_part": form.errors["local_part"]},
    }
    assert not Alias.objects.filter(owner=owner).exists()


@override_settings(ALIAS_LIMIT_PER_USER=1)
def test_the_alias_limit_is_the_same_clear_refusal_through_every_api(person) -> None:
    owner = person()
    raw = make_token(owner)
    assert call("POST", "/api/mailadmin/aliases", raw, {"site": "a.example.com"}).status_code == 201
    expected = "You have reached the limit of 1 aliases. Delete some you no longer use to make new ones."
    ours = call("POST", "/api/mailadmin/aliases", raw, {"site": "b.example.com"})
    assert (ours.status_code, ours.json()) == (400, {"error": expected, "fields": {"non_field": [expected]}})
    simplelogin = call("POST", "/api/alias/random/new?hostname=c.example.com", None, {}, HTTP_AUTHENTICATION=raw)
    assert (simplelogin.status_code, simplelogin.json()) == (400, {"error": expected})
    addy = call("POST", "/api/v1/aliases", raw, {"description": "Website: d.example.com."})
    assert (addy.status_code, addy.json()["message"]) == (400, expected)
    assert Alias.objects.filter(owner=owner).count() == 1


def test_a_read_only_token_reads_and_is_refused_every_change(person, domain: Domain) -> None:
    owner = person()
    alias = Alias.objects.create(
        owner=owner, local_part="readme", domain=Domain.objects.get(name=settings.ALIAS_DOMAIN)
    )
    raw = make_token(owner, ApiToken.Scope.READ)
    assert call("GET", f"/api/mailadmin/aliases/{alias.pk}", raw).status_code == 200
    for method, path, body in (
        ("POST", "/api/mailadmin/aliases", {"kind": "random"}),
        ("PATCH", f"/api/mailadmin/aliases/{alias.pk}", {"note": "x"}),
        ("POST", f"/api/mailadmin/aliases/{alias.pk}/disable", None),
        ("DELETE", f"/api/mailadmin/aliases/{alias.pk}", None),
    ):
        response = call(method, path, raw, body)
        assert response.status_code == 403 and "only read" in response.json()["error"]
    alias.refresh_from_db()
    assert alias.enabled and Alias.objects.filter(owner=owner).count() == 1


def test_a_suspended_or_disabled_persons_tokens_stop_at_the_next_request(person) -> None:
    owner, admin = person(), person("admin")
    raw = make_token(owner)
    assert call("GET", "/api/mailadmin/token", raw).status_code == 200
    suspension.suspend(owner.username, "Phishing from this account", None, admin)
    refused = call("POST", "/api/alias/random/new?hostname=shop.example.com", None, {}, HTTP_AUTHENTICATION=raw)
    assert refused.status_code == 403 and "suspended" in refused.json()["error"]
    assert not Alias.objects.filter(owner=owner).exists()
    suspension.reinstate(owner.username, admin)
    assert call("GET", "/api/mailadmin/token", raw).status_code == 200
    directory.remove_password(owner.username)  # "disable account", or any LDAP tool
    refused = call("GET", "/api/mailadmin/aliases", raw)
    assert refused.status_code == 401 and refused.json() == {"error": "The account of this API token is disabled."}


def test_a_suspension_in_force_here_stops_the_tokens_even_with_the_directory_flag_cleared(person) -> None:
    owner, admin = person(), person("admin")
    raw = make_token(owner)
    suspension.suspend(owner.username, "Phishing from this account", None, admin)
    directory.set_sender_blocked(owner.username, False)  # another LDAP tool cleared the flag
    refused = call("GET", "/api/mailadmin/token", raw)
    assert refused.status_code == 403 and "suspended" in refused.json()["error"]
    suspension.reinstate(owner.username, admin)
    assert call("GET", "/api/mailadmin/token", raw).status_code == 200


def test_a_revoked_or_expired_token_opens_nothing(person) -> None:
    owner = person()
    raw = make_token(owner, expires_at=timezone.now() + timedelta(days=1))
    token = ApiToken.objects.get(owner=owner)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert call("GET", "/api/mailadmin/token", raw).json() == {"error": "This API token has expired."}
    ApiToken.objects.filter(pk=token.pk).update(expires_at=None)
    request = RequestFactory().post("/")
    request.user = owner
    services.revoke_token(request, token)
    response = call("GET", "/api/mailadmin/token", raw)
    assert response.status_code == 401 and response.json() == {"error": "This API token was revoked."}
    event = AuditEvent.objects.get(action="api_token.revoke")
    assert event.target == owner.username and raw not in event.detail and token.display_prefix in event.detail


def test_a_web_session_is_never_accepted_on_the_api(sign_in, domain: Domain) -> None:
    client = sign_in()
    owner = User.objects.get(username=client.directory_user.uid)
    Alias.objects.create(owner=owner, local_part="session", domain=domain)
    listed = client.get("/api/mailadmin/aliases")
    made = client.post("/api/mailadmin/aliases", json.dumps({"kind": "random"}), "application/json")
    assert listed.status_code == made.status_code == 401
    assert Alias.objects.filter(owner=owner).count() == 1


@override_settings(API_RATE_LIMIT=3, API_RATE_WINDOW=60)
def test_each_token_has_its_own_rate_limit(person) -> None:
    owner = person()
    first, second = make_token(owner), make_token(owner)
    statuses = [call("GET", "/api/mailadmin/token", first).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = call("GET", "/api/mailadmin/aliases", first)
    assert limited.status_code == 429 and 1 <= int(limited["Retry-After"]) <= 61 and limited.json()["error"]
    assert call("GET", "/api/mailadmin/token", second).status_code == 200
    counters.reset(services.rate_key(ApiToken.objects.get(digest=services.digest_of(first))))  # the window ends
    assert call("GET", "/api/mailadmin/token", first).status_code == 200


def test_with_redis_down_the_api_refuses_every_call_rather_than_go_unlimited(person, caplog) -> None:
    raw = make_token(person())
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        response = call("GET", "/api/mailadmin/token", raw)
    assert response.status_code == 503 and "rate limiter" in response.json()["error"]
    assert "API rate limit unavailable" in caplog.text
    assert call("GET", "/api/mailadmin/token", raw).status_code == 200


def test_use_from_a_new_address_is_audited_once_per_address(person) -> None:
    owner = person()
    raw = make_token(owner)
    for address in ("192.0.2.10", "192.0.2.10", "198.51.100.7", "192.0.2.10"):
        assert call("GET", "/api/mailadmin/token", raw, REMOTE_ADDR=address).status_code == 200
    events = AuditEvent.objects.filter(action="api_token.new_address").order_by("pk")
    assert [event.client_address for event in events] == ["192.0.2.10", "198.51.100.7"]
    assert all(event.actor_name == owner.username for event in events)


def test_the_suggestion_and_the_domains_are_what_the_web_page_offers(person) -> None:
    owner = person()
    raw = make_token(owner, ApiToken.Scope.READ)
    suggestion = call("GET", "/api/mailadmin/suggestion?hostname=https://www.twitter.com/signup", raw).json()
    assert suggestion == {
        "hostname": "twitter.com",
        "local_part": "twittercom",
        "domain": settings.ALIAS_DOMAIN,
        "address": f"twittercom@{settings.ALIAS_DOMAIN}",
    }
    domains = call("GET", "/api/mailadmin/domains", raw).json()
    assert {"name": settings.ALIAS_DOMAIN, "alias_domain": True, "personal_catchall": False, "default": True} in domains


def test_cors_answers_browser_extensions_on_the_creation_calls_only(person) -> None:
    preflight = {"HTTP_ORIGIN": "chrome-extension://nngceckbapebfimnlniiiahkandclblb"}
    preflight["HTTP_ACCESS_CONTROL_REQUEST_METHOD"] = "POST"
    answer = Client().options("/api/alias/random/new?hostname=shop.example.com", **preflight)
    assert answer.status_code == 204 and answer["Access-Control-Allow-Origin"] == preflight["HTTP_ORIGIN"]
    assert "Authentication" in answer["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in answer
    firefox = "moz-extension://0a1b2c3d-4e5f-6789-abcd-ef0123456789"
    addy = Client().post("/api/v1/aliases", "{}", "application/json", HTTP_ORIGIN=firefox)
    assert addy.status_code == 401 and addy["Access-Control-Allow-Origin"] == firefox
    for path, origin in (
        ("/api/mailadmin/aliases", preflight["HTTP_ORIGIN"]),  # our own API: no browser calls it
        ("/tokens/", preflight["HTTP_ORIGIN"]),
        ("/api/alias/random/new", "https://evil.example"),
        ("/api/alias/random/new", "chrome-extension://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    ):
        response = Client().options(path, HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
        assert "Access-Control-Allow-Origin" not in response, path


def test_the_openapi_description_lists_every_call() -> None:
    schema = Client().get("/api/mailadmin/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert {"/api/mailadmin/aliases", "/api/mailadmin/aliases/{alias_id}", "/api/mailadmin/suggestion"} <= set(
        schema["paths"]
    )
    assert set(schema["paths"]["/api/mailadmin/aliases/{alias_id}"]) == {"get", "patch", "delete"}


def test_a_body_that_is_not_json_or_not_utf8_gets_a_plain_error(person) -> None:
    owner = person()
    raw = make_token(owner)
    for body in (b"{not json", b'{"kind": "random", "note": "\xff\xfe"}', b"[]", b'"text"'):
        response = Client().post("/api/mailadmin/aliases", body, "application/json", **bearer(raw))
        assert response.status_code == 400 and response.json()["error"], body
    assert not Alias.objects.filter(owner=owner).exists()


def test_a_creation_costs_two_directory_searches_on_a_kept_connection_and_pinned_queries(person, ldap_calls) -> None:
    owner = person()
    raw = make_token(owner)

    def create(site: str) -> list[str]:
        ldap_calls.clear()
        with CaptureQueriesContext(connection) as queries:
            made = call("POST", f"/api/alias/random/new?hostname={site}", None, {"note": "x"}, HTTP_AUTHENTICATION=raw)
        assert made.status_code == 201, made.content
        # The owner (entry and groups in one), then whether the name is a mailbox or a colleague's
        # name, on the connection the previous call bound and kept.
        assert ldap_calls == ["search", "search"]
        return [query["sql"] for query in queries.captured_queries]

    call("GET", "/api/mailadmin/token", raw)  # binds the connection (unless an earlier call did)
    create("first.example.com")  # the token's first use is noted (audited once, written once a minute)
    pinned = create("shop.example.com")
    for n in range(30):
        create(f"site{n}.example.com")
    create("shop.example.com")  # a second one for a site: the name made from it is taken
    assert len(create("more.example.com")) == len(pinned), "a creation's queries grew with the aliases"
    # Token check: the token with its owner's suspension (the role comes from the directory's
    # groups). Form: domains, names taken (aliases, tombstones, catch-alls). create_alias (in the
    # test's transaction, so in a savepoint): the owner's row lock (not on SQLite, which has
    # none), suspension, alias count, creation rate, the address (alias, tombstone, catch-all),
    # alias, audit event, publication request (generation bumped, its value, request).
    assert len(pinned) == (19 if connection.features.has_select_for_update else 18), pinned


def test_a_role_taken_away_in_the_directory_counts_from_the_next_call(person) -> None:
    admin = person("admin")
    raw = make_token(admin)
    # Admins may give out reserved names; the role is the directory's at each call.
    made = call("POST", "/api/mailadmin/aliases", raw, {"kind": "custom", "local_part": "owner-lists"})
    assert made.status_code == 201, made.content
    directory.remove_from_group(admin.username, settings.LDAP_ADMIN_GROUP_DN)
    refused = call("POST", "/api/mailadmin/aliases", raw, {"kind": "custom", "local_part": "owner-news"})
    assert refused.status_code == 400 and "reserved" in refused.json()["error"], refused.content
    assert not Alias.objects.filter(local_part="owner-news").exists()


def test_an_api_call_binds_a_new_connection_only_when_the_kept_one_is_stale_or_closed(
    person, ldap_calls, monkeypatch
) -> None:
    raw = make_token(person())
    assert call("GET", "/api/mailadmin/token", raw).status_code == 200
    ldap_calls.clear()
    assert call("GET", "/api/mailadmin/token", raw).status_code == 200
    assert ldap_calls == ["search"]  # kept from the call before
    slapd = Slapd()
    slapd.stop()
    slapd.start()  # the kept connection is closed with it: seen before use, not a 503
    ldap_calls.clear()
    assert call("GET", "/api/mailadmin/token", raw).status_code == 200
    assert ldap_calls == ["bind", "search"]
    monkeypatch.setattr(directory, "KEPT_IDLE", 0.0)  # idle longer than it may be: not used again
    ldap_calls.clear()
    assert call("GET", "/api/mailadmin/token", raw).status_code == 200
    assert ldap_calls == ["bind", "search"]


def test_a_refused_token_costs_no_directory_connection(person, ldap_calls) -> None:
    assert call("GET", "/api/mailadmin/token", "mat_" + "x" * 43).status_code == 401
    assert call("POST", "/api/alias/random/new?hostname=a.example.com", None, {}).status_code == 401
    assert ldap_calls == []


def test_with_slapd_down_every_call_is_a_clear_503_and_nothing_is_made(person) -> None:
    owner = person()
    raw = make_token(owner)
    slapd = Slapd()
    slapd.stop()
    try:
        checked = call("GET", "/api/mailadmin/token", raw)
        made = call("POST", "/api/alias/random/new?hostname=down.example.com", None, {}, HTTP_AUTHENTICATION=raw)
    finally:
        slapd.start()
    for response in (checked, made):
        assert response.status_code == 503, response.content
        assert "directory is not answering" in response.content.decode()
    assert not Alias.objects.filter(owner=owner).exists()
    again = call("POST", "/api/alias/random/new?hostname=up.example.com", None, {}, HTTP_AUTHENTICATION=raw)
    assert again.status_code == 201, again.content
