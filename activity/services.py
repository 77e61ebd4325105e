"""Blocks, leak flags and retention: every change in one transaction with its audit event and
the bump that tells the policy service to reload (within POLICY_REFRESH_SECONDS)."""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.utils import timezone

from activity.models import AliasDailyCount, AliasSenderDomain, BlockGeneration, LeakFlag, SenderBlock
from aliases.models import Alias
from audit.models import record_event


def get_own_block(request: HttpRequest, pk: int) -> SenderBlock:
    """A block of the signed-in person (on one of their aliases or their account); 404 otherwise."""
    return get_object_or_404(
        SenderBlock.objects.select_related("alias__domain"),
        pk=pk,
        owner_id=request.user.pk,
        scope__in=(SenderBlock.Scope.ALIAS, SenderBlock.Scope.ACCOUNT),
    )


def get_own_leak_flag(request: HttpRequest, pk: int) -> LeakFlag:
    return get_object_or_404(LeakFlag.objects.select_related("alias__domain"), pk=pk, alias__owner_id=request.user.pk)


def _bump() -> None:
    updated = BlockGeneration.objects.update(changes=F("changes") + 1)
    if not updated:
        BlockGeneration.objects.create(changes=1)


def _target(block: SenderBlock) -> str:
    if block.scope == SenderBlock.Scope.ALIAS and block.alias is not None:
        return block.alias.address
    if block.scope == SenderBlock.Scope.ACCOUNT and block.owner is not None:
        return block.owner.get_username()
    return "organisation"


def create_block(
    request: HttpRequest, *, scope: str, sender: str, is_domain: bool, owner: User | None, alias: Alias | None = None
) -> SenderBlock:
    """Block a sender (already validated and lower-cased by the form); the same block twice is one."""
    with transaction.atomic():
        block, created = SenderBlock.objects.get_or_create(
            scope=scope,
            owner=owner,
            alias=alias,
            sender=sender,
            is_domain=is_domain,
            defaults={"created_by": request.user.get_username()},
        )
        if created:
            _bump()
            record_event("sender_block.create", request=request, target=_target(block), detail=f"blocked {block.shown}")
    return block


def remove_block(request: HttpRequest, block: SenderBlock) -> None:
    with transaction.atomic():
        target = _target(block)
        detail = f"unblocked {block.shown} (it had stopped {block.stopped} mails)"
        block.delete()
        _bump()
        record_event("sender_block.delete", request=request, target=target, detail=detail)


def dismiss_leak_flag(request: HttpRequest, flag: LeakFlag) -> None:
    if flag.dismissed_at is not None:
        return
    with transaction.atomic():
        flag.dismissed_at = timezone.now()
        flag.save(update_fields=["dismissed_at"])
        record_event(
            "leak_flag.dismiss", request=request, target=flag.alias.address, detail=f"mail from {flag.sender_domain}"
        )


def block_leak_sender(request: HttpRequest, flag: LeakFlag) -> SenderBlock:
    """One step from the flag: block the sender's registrable domain for this alias; the flag is done."""
    with transaction.atomic():
        block = create_block(
            request,
            scope=SenderBlock.Scope.ALIAS,
            sender=flag.registrable_domain,
            is_domain=True,
            owner=flag.alias.owner,
            alias=flag.alias,
        )
        if flag.dismissed_at is None:
            flag.dismissed_at = timezone.now()
            flag.save(update_fields=["dismissed_at"])
    return block


def prune_activity(now: datetime | None = None) -> dict[str, int]:
    """Delete counts, sender domains and dismissed flags older than ACTIVITY_RETENTION_DAYS."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.ACTIVITY_RETENTION_DAYS)
    return {
        "daily counts": AliasDailyCount.objects.filter(day__lt=cutoff.date()).delete()[0],
        "sender domains": AliasSenderDomain.objects.filter(last_at__lt=cutoff).delete()[0],
        "leak flags": LeakFlag.objects.filter(dismissed_at__lt=cutoff).delete()[0],
    }
