"""Changing a vacation reply: saved, announced to the map publication and audited together."""

from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest

from aliases.publication import request_publication
from audit.models import record_event
from mailadmin.dates import format_datetime
from outofoffice.models import VacationReply


def summary(vacation: VacationReply) -> str:
    """For the audit log: the settings, not the text (it is in the row, and may be long)."""
    if not vacation.enabled:
        return "off"
    starts = format_datetime(vacation.starts_at, zone=True) if vacation.starts_at else "now"
    ends = format_datetime(vacation.ends_at, zone=True) if vacation.ends_at else "until switched off"
    return f"on from {starts} to {ends}, every {vacation.interval_days} days per sender"


def save_vacation(vacation: VacationReply, request: HttpRequest) -> None:
    actor = request.user.get_username() if isinstance(request.user, User) else ""
    vacation.updated_by = actor
    with transaction.atomic():
        vacation.save()
        request_publication(f"vacation of {vacation.uid} changed")
        record_event(
            "vacation.set" if vacation.enabled else "vacation.off",
            request=request,
            target=vacation.uid,
            detail=f"{summary(vacation)} (set by {actor} for {vacation.uid})",
        )


def clear_vacation(vacation: VacationReply, request: HttpRequest) -> None:
    """Switch the reply off and forget its text: what helpdesk does when someone is back."""
    actor = request.user.get_username() if isinstance(request.user, User) else ""
    with transaction.atomic():
        VacationReply.objects.filter(pk=vacation.pk).delete()
        request_publication(f"vacation of {vacation.uid} cleared")
        record_event(
            "vacation.clear", request=request, target=vacation.uid, detail=f"cleared by {actor} for {vacation.uid}"
        )
