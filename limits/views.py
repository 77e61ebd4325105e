"""Admin pages: the heaviest senders now, automatic suspensions, and limit overrides."""

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.roles import admin_required
from audit.models import record_event
from limits import services
from limits.counters import Counters
from limits.forms import SendingLimitForm
from limits.models import SendingLimit
from mailadmin.redis_store import RedisUnavailable


@admin_required
def senders(request: HttpRequest) -> HttpResponse:
    counters = Counters(settings.LIMIT_COUNTER_URL)
    try:
        hour, day, unavailable = counters.heaviest("hour"), counters.heaviest("day"), False
    except RedisUnavailable:
        hour, day, unavailable = [], [], True
    context = {
        "hour": hour,
        "day": day,
        "unavailable": unavailable,
        "limits": services.default_limits(),
        "automatic": services.automatic_suspensions(),
    }
    return render(request, "limits/senders.html", context)


@admin_required
def limit_list(request: HttpRequest) -> HttpResponse:
    form = SendingLimitForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        return _save(request, form)
    context = {"form": form, "rows": SendingLimit.objects.all(), "limits": services.default_limits()}
    return render(request, "limits/list.html", context)


@admin_required
def limit_edit(request: HttpRequest, pk: int) -> HttpResponse:
    row = get_object_or_404(SendingLimit, pk=pk)
    form = SendingLimitForm(request.POST if request.method == "POST" else None, instance=row)
    if request.method == "POST" and form.is_valid():
        return _save(request, form)
    return render(request, "limits/edit.html", {"form": form, "row": row})


@admin_required
@require_POST
def limit_delete(request: HttpRequest, pk: int) -> HttpResponse:
    row = get_object_or_404(SendingLimit, pk=pk)
    row.delete()
    record_event("limits.remove", request=request, target=f"{row.scope} {row.name}")
    messages.success(request, f"{row.name} follows the wider limits again.")
    return redirect("limits:list")


def _save(request: HttpRequest, form: SendingLimitForm) -> HttpResponse:
    row = form.save(commit=False)
    row.changed_by, row.changed_at = request.user.get_username(), timezone.now()
    row.save()
    record_event("limits.set", request=request, target=f"{row.scope} {row.name}", detail=_figures(row))
    messages.success(request, f"Limits for {row.name} saved.")
    return redirect("limits:list")


def _figures(row: SendingLimit) -> str:
    return ", ".join(f"{field} {getattr(row, field)}" for field in services.FIELDS if getattr(row, field) is not None)
