from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from accounts import directory
from accounts.forms import UNAVAILABLE
from accounts.roles import Role, role_of
from trail import services
from trail.forms import TrailSearchForm
from trail.models import Delivery, LogPosition

PAGE_SIZE = 50
SAME_MESSAGE_WINDOW = timedelta(days=7)


def _unavailable(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/directory_unavailable.html", {"message": UNAVAILABLE}, status=503)


def _is_staff(request: HttpRequest) -> bool:
    return role_of(request.user) in (Role.HELPDESK, Role.ADMIN)


@require_GET
@login_required
def search(request: HttpRequest) -> HttpResponse:
    """Helpdesk and admins: every record. Anyone else: mail from and to their own addresses."""
    assert isinstance(request.user, User)
    staff = _is_staff(request)
    own: set[str] | None = None
    domains: set[str] = set()
    records = Delivery.objects.all()
    if not staff:
        try:
            own, domains = services.own_addresses(request.user)
        except directory.DirectoryUnavailable:
            return _unavailable(request)
        records = records.filter(services.involving(own, domains))
    form = TrailSearchForm(request.GET, own=own, own_domains=domains)
    filtered = form.is_valid()
    records = form.filter(records) if filtered else records.none()
    page = Paginator(records, PAGE_SIZE).get_page(request.GET.get("page"))
    active = filtered and any(form.cleaned_data.values())
    return render(
        request,
        "trail/search.html",
        {
            "form": form,
            "page": page,
            "filters_active": active,
            "staff": staff,
            "own_count": len(own or ()),
            "own_domains": len(domains),
            "retention_days": settings.TRAIL_RETENTION_DAYS,
            # When each mail host's follower last stored lines: a stopped follower shows here.
            "read_up_to": list(LogPosition.objects.order_by("host").values_list("host", "updated_at")),
        },
    )


@require_GET
@login_required
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One record and the other outcomes of the same message that the viewer may see; 404 for a
    record that involves none of an end user's addresses."""
    assert isinstance(request.user, User)
    staff = _is_staff(request)
    try:
        visible = services.visible_to(request.user, staff)
    except directory.DirectoryUnavailable:
        return _unavailable(request)
    record = get_object_or_404(visible, pk=pk)
    # Short queue ids come back once their queue file's inode does: the same message is the same
    # id on the same host within Postfix's longest queue lifetime (5 days by default).
    near = (record.logged_at - SAME_MESSAGE_WINDOW, record.logged_at + SAME_MESSAGE_WINDOW)
    same_message = (
        visible.filter(host=record.host, queue_id=record.queue_id, logged_at__range=near).exclude(pk=record.pk)[
            :PAGE_SIZE
        ]
        if record.queue_id
        else []
    )
    return render(request, "trail/detail.html", {"record": record, "same_message": same_message, "staff": staff})
