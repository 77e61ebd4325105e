"""Counts written by the policy service's flushes: several mail hosts add up, a deleted alias is
skipped, retention deletes what is old."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from activity.models import AliasDailyCount, AliasSenderDomain, AliasTotal, LeakFlag, SenderBlock
from activity.services import prune_activity
from aliases.models import Alias, Domain
from policy.decision import Outcome
from policy.recording import write_batch
from policy.tally import Batch

pytestmark = pytest.mark.django_db


@pytest.fixture
def alias() -> Alias:
    owner = User.objects.create(username="countowner")
    domain = Domain.objects.create(name="counts.example.org", is_alias_domain=True)
    return Alias.objects.create(owner=owner, local_part="shop", domain=domain)


def batch_of(alias: Alias, at: datetime, senders: list[str], block: SenderBlock | None = None) -> Batch:
    batch = Batch()
    for sender in senders:
        domain = sender.rpartition("@")[2]
        blocked = block.pk if block is not None and sender == block.sender else None
        batch.add(Outcome(alias.pk, alias.owner_id, sender, domain, blocked, leak_domain="leaky.example"), at)
    return batch


def test_two_mail_hosts_flushing_the_same_alias_and_day_add_up(alias: Alias) -> None:
    block = SenderBlock.objects.create(scope="alias", owner=alias.owner, alias=alias, sender="pest@nuisance.example")
    morning = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    write_batch(batch_of(alias, morning, ["a@fine.example", "pest@nuisance.example"], block))  # mx1
    write_batch(batch_of(alias, morning + timedelta(hours=1), ["b@fine.example", "c@fine.example"]))  # mx2
    write_batch(batch_of(alias, morning - timedelta(hours=1), ["d@fine.example"]))  # mx1, late

    day = AliasDailyCount.objects.get(alias=alias)
    assert (day.accepted, day.refused, day.last_at) == (4, 1, morning + timedelta(hours=1))
    total = AliasTotal.objects.get(alias=alias)
    assert (total.accepted, total.refused) == (4, 1)
    fine = AliasSenderDomain.objects.get(alias=alias, domain="fine.example")
    assert (fine.accepted, fine.first_at, fine.last_at) == (4, morning, morning + timedelta(hours=1))
    block.refresh_from_db()
    assert (block.stopped, block.last_stopped_at) == (1, morning)
    assert LeakFlag.objects.filter(alias=alias).count() == 1  # raised once, whichever host was first


def test_counts_for_an_alias_deleted_before_the_flush_are_dropped_and_the_rest_written(alias: Alias) -> None:
    gone = Alias.objects.create(owner=alias.owner, local_part="gone", domain=alias.domain)
    batch = batch_of(gone, timezone.now(), ["a@fine.example"])
    batch.merge(batch_of(alias, timezone.now(), ["a@fine.example"]))
    gone.delete()
    write_batch(batch)
    assert list(AliasDailyCount.objects.values_list("alias_id", "accepted")) == [(alias.pk, 1)]


def test_retention_deletes_old_counts_sender_domains_and_dismissed_flags_only(alias: Alias, settings) -> None:
    settings.ACTIVITY_RETENTION_DAYS = 90
    now = timezone.now()
    old, recent = now - timedelta(days=91), now - timedelta(days=5)
    for at in (old, recent):
        write_batch(batch_of(alias, at, [f"x@d{at.day}.example"]))
    LeakFlag.objects.update(dismissed_at=old)
    LeakFlag.objects.create(alias=alias, registrable_domain="open.example", sender_domain="o.example", flagged_at=old)

    assert prune_activity(now) == {"daily counts": 1, "sender domains": 1, "leak flags": 1}
    assert list(AliasDailyCount.objects.values_list("day", flat=True)) == [recent.date()]
    assert AliasTotal.objects.get(alias=alias).accepted == 2  # all time: never pruned
    assert list(LeakFlag.objects.values_list("registrable_domain", flat=True)) == ["open.example"]
