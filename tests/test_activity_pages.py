"""The activity pages: blocks made and undone through the forms (each an audit event), leak flags
dismissed or turned into a block, and query counts that do not grow with the data."""

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from activity.models import AliasDailyCount, AliasSenderDomain, BlockGeneration, LeakFlag, SenderBlock
from aliases.models import Alias, Domain
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(sign_in: Callable[..., Client]) -> tuple[Client, Alias]:
    client = sign_in()
    user = User.objects.get(username=client.directory_user.uid)  # type: ignore[attr-defined]
    domain, _ = Domain.objects.get_or_create(name="pages.example.org", defaults={"is_alias_domain": True})
    alias = Alias.objects.create(owner=user, local_part="shop", domain=domain, kind="site", site="shop.example")
    return client, alias


def events(action: str) -> list[tuple[str, str]]:
    return list(AuditEvent.objects.filter(action=action).values_list("target", "detail"))


def test_blocking_and_undoing_on_the_alias_page_are_audit_events_and_tell_the_service(owner) -> None:
    client, alias = owner
    before = BlockGeneration.objects.values_list("changes", flat=True).first() or 0
    data = {"sender": "Pest@Nuisance.example", "kind": "sender", "scope": "alias"}
    assert client.post(f"/activity/aliases/{alias.pk}/block/", data).status_code == 302
    block = SenderBlock.objects.get()
    assert (block.scope, block.alias_id, block.sender, block.is_domain) == (
        "alias",
        alias.pk,
        "pest@nuisance.example",
        False,
    )
    assert events("sender_block.create") == [(alias.address, "blocked pest@nuisance.example")]
    # The same block again is one block and one event.
    client.post(f"/activity/aliases/{alias.pk}/block/", data)
    assert SenderBlock.objects.count() == 1 and len(events("sender_block.create")) == 1

    assert client.post(f"/activity/blocks/{block.pk}/delete/", {"from": "alias"})["Location"] == f"/aliases/{alias.pk}/"
    assert not SenderBlock.objects.exists()
    assert events("sender_block.delete") == [
        (alias.address, "unblocked pest@nuisance.example (it had stopped 0 mails)")
    ]
    assert BlockGeneration.objects.get().changes == before + 2


def test_a_domain_block_from_an_address_blocks_its_domain_for_all_my_addresses(owner) -> None:
    client, alias = owner
    data = {"sender": "news@mailer.shop.example", "kind": "domain", "scope": "account"}
    client.post(f"/activity/aliases/{alias.pk}/block/", data)
    block = SenderBlock.objects.get()
    assert (block.scope, block.alias_id, block.sender, block.is_domain) == (
        "account",
        None,
        "mailer.shop.example",
        True,
    )
    assert "anyone at mailer.shop.example" in client.get("/activity/blocks/").content.decode()


def test_an_end_user_cannot_make_an_organisation_wide_block(owner) -> None:
    client, alias = owner
    data = {"sender": "x@y.example", "kind": "sender", "scope": "organisation"}
    response = client.post(f"/activity/aliases/{alias.pk}/block/", data)
    assert response.status_code == 200 and b"error" in response.content.lower()
    response = client.post("/activity/blocks/", data)
    assert response.status_code == 200 and not SenderBlock.objects.exists()


def test_admins_block_for_everyone_and_undo_it(sign_in) -> None:
    admin = sign_in("admin")
    response = admin.post(
        "/activity/organisation/", {"sender": "junk.example", "kind": "domain", "scope": "organisation"}
    )
    assert response.status_code == 302
    block = SenderBlock.objects.get()
    assert (block.scope, block.owner_id, block.sender) == ("organisation", None, "junk.example")
    assert events("sender_block.create") == [("organisation", "blocked anyone at junk.example")]
    admin.post(f"/activity/organisation/{block.pk}/delete/")
    assert not SenderBlock.objects.exists() and len(events("sender_block.delete")) == 1


def test_a_leak_flag_is_dismissed_or_turned_into_a_domain_block_in_one_step(owner) -> None:
    client, alias = owner
    now = timezone.now()
    flag = LeakFlag.objects.create(
        alias=alias, registrable_domain="other.example", sender_domain="m.other.example", flagged_at=now
    )
    client.post(f"/activity/leaks/{flag.pk}/block/")
    block = SenderBlock.objects.get()
    assert (block.alias_id, block.sender, block.is_domain) == (alias.pk, "other.example", True)
    flag.refresh_from_db()
    assert flag.dismissed_at is not None

    second = LeakFlag.objects.create(
        alias=alias, registrable_domain="third.example", sender_domain="third.example", flagged_at=now
    )
    client.post(f"/activity/leaks/{second.pk}/dismiss/")
    second.refresh_from_db()
    assert second.dismissed_at is not None and events("leak_flag.dismiss") == [
        (alias.address, "mail from third.example")
    ]
    assert "possibly leaked" not in client.get("/aliases/").content.decode()


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_alias_page_and_the_blocks_page_run_a_fixed_number_of_queries(owner) -> None:
    client, alias = owner
    few = (_queries(client, f"/aliases/{alias.pk}/"), _queries(client, "/activity/blocks/"))
    now = timezone.now()
    user = alias.owner
    others = Alias.objects.bulk_create(Alias(owner=user, local_part=f"a{i}", domain=alias.domain) for i in range(30))
    SenderBlock.objects.bulk_create(
        SenderBlock(scope="alias", owner=user, alias=other, sender=f"p{i}@x.example") for i, other in enumerate(others)
    )
    AliasSenderDomain.objects.bulk_create(
        AliasSenderDomain(alias=alias, domain=f"d{i}.example", last_sender=f"s@d{i}.example", first_at=now, last_at=now)
        for i in range(40)
    )
    AliasDailyCount.objects.create(alias=alias, day=now.date(), accepted=5, refused=1, last_at=now)
    many = (_queries(client, f"/aliases/{alias.pk}/"), _queries(client, "/activity/blocks/"))
    assert many == few
