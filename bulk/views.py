"""CSV import and export, for admins: upload (a dry run), follow a job, import what the dry
run checked, take the generated passwords once, export users and aliases."""

import logging
from collections.abc import Iterator

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_POST

from accounts import directory
from accounts.assurance import recent_second_factor
from accounts.forms import UNAVAILABLE
from accounts.roles import admin_required
from bulk import csvfiles, services, tasks
from bulk.forms import ExportForm, ImportForm
from bulk.models import ImportJob, ImportRow
from mfa import sealing

logger = logging.getLogger(__name__)
RECENT_JOBS = 10


def _own_job(request: HttpRequest, pk: int) -> ImportJob:
    """An import of the signed-in admin; 404 for anyone else's (it may hold their passwords)."""
    return get_object_or_404(ImportJob, pk=pk, created_by_id=request.user.pk)


def _queue(request: HttpRequest, job: ImportJob) -> None:
    try:
        tasks.run_import.delay(job.pk)
    except Exception as exc:  # kombu raises several types for an unreachable broker
        logger.warning("import %s not queued now: %s", job.pk, exc)
        messages.warning(request, "The worker's queue is not answering; the import starts within a few minutes.")


def _index(request: HttpRequest, form: ImportForm, export_form: ExportForm, status: int = 200) -> HttpResponse:
    assert isinstance(request.user, User)
    context = {
        "form": form,
        "export_form": export_form,
        "layouts": csvfiles.LAYOUTS,
        "jobs": ImportJob.objects.filter(created_by=request.user)[:RECENT_JOBS],
    }
    return render(request, "bulk/index.html", context, status=status)


@admin_required
def index(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        job = services.start_import(request, form.cleaned_data["kind"], upload.name or "", form.text, len(form.rows))
        _queue(request, job)
        return redirect("bulk:job", pk=job.pk)
    return _index(request, form, ExportForm())


@admin_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = _own_job(request, pk)
    counts = services.outcome_counts(job)
    context = {
        "job": job,
        "counts": counts,
        "errors": job.rows.filter(outcome=ImportRow.Outcome.ERROR),
        "imported_as": job.imports.order_by("-id").first(),
        "may_import": job.dry_run
        and job.state == ImportJob.State.DONE
        and bool(job.sealed_content)
        and counts[ImportRow.Outcome.VALID] > 0
        and not job.imports.exists(),
        "passwords": 0
        if job.passwords_handed_over_at
        else job.rows.filter(outcome=ImportRow.Outcome.CREATED).exclude(sealed_password="").count(),
        "percent": 100 * job.processed_rows // max(job.total_rows, 1),
    }
    return render(request, "bulk/job.html", context)


@admin_required
@require_POST
@recent_second_factor
def job_apply(request: HttpRequest, pk: int) -> HttpResponse:
    dry_run = _own_job(request, pk)
    if not (dry_run.dry_run and dry_run.state == ImportJob.State.DONE and dry_run.sealed_content):
        messages.error(request, "Only a finished dry run can be imported, once. Upload the file again.")
        return redirect("bulk:job", pk=pk)
    if dry_run.imports.exists():
        return redirect("bulk:job", pk=dry_run.imports.order_by("-id").first().pk)  # type: ignore[union-attr]
    text = sealing.unseal(dry_run.sealed_content)
    job = services.start_import(request, dry_run.kind, dry_run.filename, text, dry_run.total_rows, source=dry_run)
    _queue(request, job)
    return redirect("bulk:job", pk=job.pk)


def _download(lines: Iterator[str], name: str) -> HttpResponse:
    # Whole, not streamed: the role and second-factor decorators type their views' responses.
    response = HttpResponse("".join(lines), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response


@admin_required
@require_POST
@recent_second_factor
@sensitive_variables("passwords", "lines")
def job_passwords(request: HttpRequest, pk: int) -> HttpResponse:
    job = _own_job(request, pk)
    if job.dry_run or job.kind != ImportJob.Kind.USERS or job.state != ImportJob.State.DONE:
        messages.error(request, "Only a finished import of users has initial passwords.")
        return redirect("bulk:job", pk=pk)
    passwords = services.hand_over_passwords(request, job)
    if passwords is None:
        messages.error(
            request,
            "The initial passwords were handed over already and are kept nowhere. "
            "Set a new one on the user's page if one is lost.",
        )
        return redirect("bulk:job", pk=pk)
    lines = csvfiles.csv_lines(("uid", "initial_password"), passwords)
    return _download(lines, f"initial-passwords-import-{job.pk}.csv")


@admin_required
@require_POST
@recent_second_factor
def export(request: HttpRequest) -> HttpResponse:
    form = ExportForm(request.POST)
    if not form.is_valid():
        return _index(request, ImportForm(), form)
    today = timezone.localdate().isoformat()
    if form.cleaned_data["what"] == "aliases":
        return _download(services.export_aliases(request), f"aliases-{today}.csv")
    with_hashes = form.cleaned_data["password_hashes"]
    try:
        lines = services.export_users(request, with_hashes)
    except directory.DirectoryUnavailable:
        form.add_error(None, UNAVAILABLE)
        return _index(request, ImportForm(), form, status=503)
    name = f"users-WITH-PASSWORD-HASHES-{today}.csv" if with_hashes else f"users-{today}.csv"
    return _download(lines, name)
