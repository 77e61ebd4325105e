"""Activity panels included from other apps' templates ({% load activity %}): the aliases app
shows them without importing this app."""

from datetime import timedelta

from django import template
from django.db.models import Max, Q, Sum
from django.utils import timezone

from activity.forms import BlockForm
from activity.models import AliasDailyCount, AliasSenderDomain, AliasTotal, LeakFlag, SenderBlock
from aliases.models import Alias

register = template.Library()
SENDER_DOMAINS_SHOWN = 20
FLAGS_SHOWN = 5


@register.inclusion_tag("activity/_alias_activity.html")
def alias_activity(alias: Alias) -> dict[str, object]:
    """The alias page's panel: counts, recent sender domains with block buttons, its blocks, leak flags."""
    since = timezone.now().date() - timedelta(days=30)
    counts = AliasDailyCount.objects.filter(alias=alias).aggregate(
        accepted_30=Sum("accepted", filter=Q(day__gte=since)),
        refused_30=Sum("refused", filter=Q(day__gte=since)),
        last_at=Max("last_at"),
    )
    return {
        "alias": alias,
        "counts": {key: value or 0 for key, value in counts.items() if key != "last_at"},
        "last_at": counts["last_at"],
        "total": AliasTotal.objects.filter(alias=alias).first(),
        "senders": list(AliasSenderDomain.objects.filter(alias=alias)[:SENDER_DOMAINS_SHOWN]),
        "blocks": list(SenderBlock.objects.filter(alias=alias)),
        "flags": list(LeakFlag.objects.filter(alias=alias, dismissed_at__isnull=True)),
        "form": BlockForm(scopes=(SenderBlock.Scope.ALIAS, SenderBlock.Scope.ACCOUNT)),
    }


@register.inclusion_tag("activity/_leak_flags.html")
def leak_flags(user: object) -> dict[str, object]:
    """The overview's list of aliases flagged as possibly leaked (one query)."""
    flags = LeakFlag.objects.filter(alias__owner_id=getattr(user, "pk", None), dismissed_at__isnull=True)
    return {"flags": list(flags.select_related("alias__domain")[:FLAGS_SHOWN])}
