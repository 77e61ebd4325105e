"""Writing a batch of counts: increments, so several mail hosts sharing the database add up."""

from datetime import datetime

from django.db import transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce, Greatest

from activity.models import AliasDailyCount, AliasSenderDomain, LeakFlag, SenderBlock
from aliases.models import Alias
from policy.tally import Batch


def _later(field: str, at: datetime | None) -> Greatest:
    value = Value(at, output_field=DateTimeField())
    return Greatest(Coalesce(F(field), value), value)


def _existing_aliases(batch: Batch) -> set[int]:
    wanted = sorted({key[0] for key in (*batch.daily, *batch.senders, *batch.leaks)})
    found: set[int] = set()
    for i in range(0, len(wanted), 500):
        found.update(Alias.objects.filter(pk__in=wanted[i : i + 500]).values_list("pk", flat=True))
    return found


def write_batch(batch: Batch) -> None:
    """One transaction; a counted alias deleted meanwhile is skipped."""
    with transaction.atomic():
        live = _existing_aliases(batch)
        for (alias_id, day), count in batch.daily.items():
            if alias_id not in live:
                continue
            changed = AliasDailyCount.objects.filter(alias_id=alias_id, day=day).update(
                accepted=F("accepted") + count.accepted,
                refused=F("refused") + count.refused,
                last_at=_later("last_at", count.last_at),
            )
            if not changed:
                AliasDailyCount.objects.create(
                    alias_id=alias_id, day=day, accepted=count.accepted, refused=count.refused, last_at=count.last_at
                )
        for (alias_id, domain), seen in batch.senders.items():
            if alias_id not in live:
                continue
            changed = AliasSenderDomain.objects.filter(alias_id=alias_id, domain=domain).update(
                accepted=F("accepted") + seen.accepted,
                refused=F("refused") + seen.refused,
                last_at=_later("last_at", seen.last_at),
                last_sender=seen.last_sender,
            )
            if not changed:
                AliasSenderDomain.objects.create(
                    alias_id=alias_id,
                    domain=domain,
                    last_sender=seen.last_sender,
                    accepted=seen.accepted,
                    refused=seen.refused,
                    first_at=seen.first_at,
                    last_at=seen.last_at,
                )
        for block_id, (mails, at) in batch.stopped.items():
            SenderBlock.objects.filter(pk=block_id).update(
                stopped=F("stopped") + mails, last_stopped_at=_later("last_stopped_at", at)
            )
        flags = [
            LeakFlag(alias_id=alias_id, registrable_domain=registrable, sender_domain=sender_domain, flagged_at=at)
            for (alias_id, registrable), (sender_domain, at) in batch.leaks.items()
            if alias_id in live
        ]
        # Another mail host may have flagged the same alias and domain first: that one stays.
        LeakFlag.objects.bulk_create(flags, ignore_conflicts=True)
