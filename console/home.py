"""The overview page: what the signed-in person has set up, and what their role looks after.

A fixed number of queries per role, whatever the number of aliases or events
(tests/test_ui_home.py pins it).
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.models import SenderSuspension
from accounts.roles import Role, role_of
from aliases.models import Alias
from audit.models import AuditEvent
from handover.models import HandoverNote, TopicDelegate
from outofoffice.models import ReplyLog, VacationReply
from outofoffice.status import away_now, vacation_status
from postfix.models import MapGeneration, MapPublication

RECENT = 5


def _own(request: HttpRequest) -> dict[str, object]:
    user = request.user
    assert isinstance(user, User)  # login_required
    aliases = Alias.objects.filter(owner=user)
    counts = aliases.aggregate(total=Count("id"), enabled=Count("id", filter=Q(enabled=True)))
    uid = user.get_username()
    vacation = VacationReply.objects.filter(uid=uid).first()
    as_topic_delegate = TopicDelegate.objects.filter(delegate_uid=uid).values("note_id")
    handed_to_me = HandoverNote.objects.filter(Q(primary_delegate_uid=uid) | Q(pk__in=as_topic_delegate))
    return {
        "alias_total": counts["total"],
        "alias_enabled": counts["enabled"],
        "recent_aliases": list(aliases.select_related("domain")[:RECENT]),
        "vacation": vacation,
        "vacation_status": vacation_status(vacation),
        "handover_note": HandoverNote.objects.filter(author=user).first(),
        "handed_to_me": list(handed_to_me.select_related("author").order_by("starts_at", "id")[:RECENT]),
    }


def _staff() -> dict[str, object]:
    now = timezone.now()
    current = away_now(now)
    return {
        "vacations_current": list(current[:RECENT]),
        "vacations_count": current.count(),
    }


def _admin() -> dict[str, object]:
    generation = MapGeneration.objects.first()
    publications = list(MapPublication.objects.all())
    requested = generation.requested if generation is not None else 0
    hosts = [
        {
            "host": p.host,
            "current": p.published_generation >= requested,
            "failing": bool(p.last_error)
            and (p.last_success_at is None or (p.last_error_at is not None and p.last_error_at > p.last_success_at)),
            "last_success_at": p.last_success_at,
            "last_error": p.last_error,
        }
        for p in publications
    ]
    suspensions = SenderSuspension.objects.active()
    hour_ago = timezone.now() - timedelta(hours=1)
    recent_replies = ReplyLog.objects.filter(sent_at__gte=hour_ago)
    capped = (
        recent_replies.values("vacation__uid")
        .annotate(replies=Count("id"))
        .filter(replies__gte=settings.VACATION_REPLIES_PER_USER_HOUR)
        .order_by("-replies")
    )
    return {
        "replies_last_hour": recent_replies.count(),
        "replies_cap_all": settings.VACATION_REPLIES_ALL_USERS_HOUR,
        "replies_capped_users": [(row["vacation__uid"], row["replies"]) for row in capped[:RECENT]],
        "replies_cap_user": settings.VACATION_REPLIES_PER_USER_HOUR,
        "suspensions": list(suspensions.order_by("-created_at")[:RECENT]),
        "suspension_count": suspensions.count(),
        "map_hosts": hosts,
        "maps_ok": all(h["current"] and not h["failing"] for h in hosts),
        "recent_events": list(AuditEvent.objects.all()[:RECENT]),
    }


@login_required
def home(request: HttpRequest) -> HttpResponse:
    role = role_of(request.user)
    context = _own(request)
    if role in (Role.HELPDESK, Role.ADMIN):
        context.update(_staff())
    if role == Role.ADMIN:
        context.update(_admin())
    return render(request, "console/home.html", context)
