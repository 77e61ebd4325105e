from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.roles import admin_required
from audit.export import EXPORT_FIELDS, csv_lines
from audit.forms import AuditFilterForm
from audit.models import AuditEvent, record_event

PAGE_SIZE = 50
EXPORT_CHUNK = 2000  # rows read from the database at a time while streaming


def _filter_form(request: HttpRequest) -> AuditFilterForm:
    actions = list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct())
    return AuditFilterForm(request.GET, actions=actions)


@admin_required
def log(request: HttpRequest) -> HttpResponse:
    return _log_page(request, _filter_form(request))


def _log_page(request: HttpRequest, form: AuditFilterForm) -> HttpResponse:
    events = AuditEvent.objects.all()
    filtered = form.is_valid()
    if filtered:
        events = form.filter(events)
    else:
        events = events.none()  # a bad filter shows its error, not the unfiltered log
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    active = filtered and any(value for name, value in form.cleaned_data.items() if name != "sign_ins")
    context = {"form": form, "page": page, "filters_active": active, "export_query": form.export_query()}
    return render(request, "console/audit_log.html", context)


@admin_required
def export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """The filtered view as CSV, streamed: any number of events in constant memory."""
    form = _filter_form(request)
    if not form.is_valid():
        return _log_page(request, form)  # the log with the filter's error
    recorded = record_event("audit.export", request=request, detail=form.describe())
    events = form.filter(AuditEvent.objects.exclude(pk=recorded.pk))
    rows = events.values_list(*EXPORT_FIELDS).iterator(chunk_size=EXPORT_CHUNK)
    zone = timezone.get_current_timezone()
    response = StreamingHttpResponse(csv_lines(rows, zone), content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.csv"'
    return response
