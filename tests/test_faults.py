"""Faults: each test breaks one real service or program at the worst moment and checks that
no change is lost and no table is left torn. (Redis down for a single change through a real
worker: test_postfix_e2e_faults.py; postmap failing for a whole publication:
test_publication.py; slapd down while an admin suspends or reinstates: test_suspension.py.)"""

import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone

from accounts import directory, suspension, tasks
from accounts.models import SenderSuspension
from aliases.models import Alias, Domain
from audit.models import AuditEvent
from localservices.redis import Redis
from localservices.slapd import Slapd
from postfix import publication
from postfix.models import MapGeneration, MapPublication
from postfix.tasks import reconcile_maps
from tests.test_publication import lookup as table_lookup


def lookup(map_dir: Path, table: str, key: str) -> str:
    return table_lookup(table, key, map_dir) or ""


def route(map_dir: Path, address: str) -> str:
    """What Postfix does with mail to an address, from the published tables, in its order:
    check_recipient_access first, then virtual_alias_maps (user@domain, then @domain)."""
    refused = lookup(map_dir, "recipient_access", address)
    if refused:
        return f"refused: {refused}"
    target = lookup(map_dir, "virtual", address) or lookup(map_dir, "virtual", "@" + address.split("@")[1])
    return f"to {target}" if target else "unknown"


@pytest.fixture
def map_dir(tmp_path: Path, settings) -> Path:
    """This test's own map directory (the private Postfix keeps reading the shared one)."""
    directory = tmp_path / "maps"
    directory.mkdir()
    settings.POSTFIX_MAP_DIR = directory
    settings.POSTFIX_RELOAD_COMMAND = "/bin/true"
    return directory


# --- Redis stopped during a burst of edits -----------------------------------------------------


@pytest.mark.django_db(transaction=True)  # on_commit must really run: it is where the broker is used
def test_a_burst_of_edits_survives_redis_stopping_half_way(sign_in, map_dir: Path) -> None:
    domain = Domain.objects.create(name=f"burst{secrets.token_hex(2)}.example.org", is_alias_domain=True)
    client = sign_in()
    owner = client.directory_user
    publication.publish(force=True, coalesce=False)

    def create(local: str) -> None:
        response = client.post("/aliases/new/custom/", {"local_part": local, "domain": domain.pk})
        assert response.status_code == 302, response.content.decode()[:1000]

    for n in range(3):
        create(f"before{n}")
    redis = Redis()
    redis.stop()
    try:
        for n in range(2):
            create(f"during{n}")
        during0 = Alias.objects.get(local_part="during0")
        assert client.post(f"/aliases/{during0.pk}/disable/").status_code == 302
        before1 = Alias.objects.get(local_part="before1")
        assert client.post(f"/aliases/{before1.pk}/delete/").status_code == 302
    finally:
        redis.start()
    create("after0")

    # Every edit is saved and recorded, whatever the broker did.
    assert sorted(Alias.objects.values_list("local_part", flat=True)) == sorted(
        ["before0", "before2", "during0", "during1", "after0"]
    )
    assert AuditEvent.objects.filter(action="alias.create").count() == 6
    # Nobody acts again: the periodic reconcile (beat) publishes everything that was missed.
    assert reconcile_maps() == "published"
    address = f"@{domain.name}"
    for local in ("before0", "before2", "during1", "after0"):
        assert route(map_dir, local + address) == f"to {owner.mail}"
    assert route(map_dir, "during0" + address).startswith("refused: 550")
    assert route(map_dir, "before1" + address).startswith("refused: 550")
    state = MapPublication.objects.get(host=settings.MAIL_HOST)
    assert (state.published_generation, state.last_error) == (MapGeneration.objects.get().requested, "")


# --- postmap failing on one map of several --------------------------------------------------


@pytest.mark.django_db
def test_postmap_failing_on_one_map_never_lets_a_disabled_alias_fall_to_the_catch_all(
    map_dir: Path, tmp_path: Path, make_directory_user
) -> None:
    # Alias targets come from the directory: both owners have entries there.
    make_directory_user(uid="cathy", mail="cathy@example.org")
    make_directory_user(uid="catchall", mail="catchall@example.org")
    owner = User.objects.create(username="cathy", email="cathy@example.org")
    catchall = User.objects.create(username="catchall", email="catchall@example.org")
    domain = Domain.objects.create(name="tear.example.org", is_alias_domain=True, catchall_owner=catchall)
    alias = Alias.objects.create(owner=owner, local_part="leaked", domain=domain)
    publication.publish(force=True, coalesce=False)
    assert route(map_dir, "leaked@tear.example.org") == "to cathy@example.org"

    # The user switches the leaked address off; building the refusal table fails (disk full,
    # say) while the others build fine.
    alias.enabled = False
    alias.save()
    publication.request_publication("test: switched off")
    failing = tmp_path / "postmap"
    failing.write_text(
        "#!/bin/sh\n"
        'case "$*" in *recipient_access*) echo "postmap: fatal: disk full" >&2; exit 1;; esac\n'
        f'exec {settings.POSTMAP_COMMAND} "$@"\n'
    )
    failing.chmod(0o755)
    with override_settings(POSTMAP_COMMAND=str(failing)):
        outcome = publication.publish(coalesce=False)
    assert outcome.status == "failed"
    # Whatever was put in place, the switched-off address must not reach the catch-all owner.
    assert route(map_dir, "leaked@tear.example.org") != "to catchall@example.org"

    assert publication.publish(coalesce=False).status == "published"
    assert route(map_dir, "leaked@tear.example.org").startswith("refused: 550")


# --- slapd stopped when a suspension ends ---------------------------------------------------------


@pytest.mark.django_db
def test_a_suspension_that_ends_while_slapd_is_down_holds_until_slapd_answers(make_directory_user, monkeypatch) -> None:
    target = make_directory_user()
    admin = User.objects.create(username=f"adm{secrets.token_hex(3)}")
    until = timezone.now() + timedelta(minutes=5)
    row = suspension.suspend(target.uid, "spam run", until, admin)
    later = until + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)

    slapd = Slapd()
    slapd.stop()
    try:
        try:
            tasks.sweep_suspensions()  # beat runs it; an exception here only fails that run
        except Exception as exc:  # noqa: BLE001 -- whatever it raises, the state must hold
            assert "directory" in str(exc).lower() or "ldap" in str(exc).lower(), exc
        row.refresh_from_db()
        # No half state: the database still says suspended, as the LDAP flag does.
        assert row.lifted_at is None
        assert not AuditEvent.objects.filter(action="suspension.expire").exists()
    finally:
        slapd.start()

    assert directory.get_user(target.uid).sender_blocked  # Postfix kept refusing meanwhile

    tasks.sweep_suspensions()  # the next run, slapd back
    row.refresh_from_db()
    assert row.lifted_at == later
    assert directory.get_user(target.uid).sender_blocked is False
    assert AuditEvent.objects.filter(action="suspension.expire", target=target.uid).count() == 1
    assert not SenderSuspension.objects.active().filter(uid=target.uid).exists()
