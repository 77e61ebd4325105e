from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.roles import admin_required
from audit.forms import AuditFilterForm
from audit.models import AuditEvent

PAGE_SIZE = 50


@admin_required
def log(request: HttpRequest) -> HttpResponse:
    actions = list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct())
    form = AuditFilterForm(request.GET, actions=actions)
    events = AuditEvent.objects.all()
    filtered = form.is_valid()
    if filtered:
        events = form.filter(events)
    else:
        events = events.none()  # a bad filter shows its error, not the unfiltered log
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    active = filtered and any(form.cleaned_data.values())
    return render(request, "audit/log.html", {"form": form, "page": page, "filters_active": active})
