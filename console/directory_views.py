"""The admin directory: search users, open one, create, disable, reset, suspend, reinstate.
Helpdesk may look (list, detail); every change is for admins only."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts import administration, directory, suspension
from accounts.assurance import recent_second_factor
from accounts.forms import (
    UNAVAILABLE,
    DirectorySearchForm,
    DisableAccountForm,
    ResetPasswordForm,
    SuspendForm,
)
from accounts.models import SenderSuspension
from accounts.roles import Action, acts_on, admin_required, directory_roles, may_act_on, staff_required
from aliases.models import Alias
from audit.models import AuditEvent
from console import people
from console.forms import CreateUserForm

PAGE_SIZE = 25
RECENT_EVENTS = 20


def _unavailable(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/directory_unavailable.html", {"message": UNAVAILABLE}, status=503)


def _directory_user_or_404(uid: str) -> directory.DirectoryUser:
    person = directory.get_user(uid)
    if person is None:
        raise Http404("no such user")
    return person


@staff_required
def user_list(request: HttpRequest) -> HttpResponse:
    form = DirectorySearchForm(request.GET)
    context: dict[str, object] = {"form": form, "rows": [], "total": 0}
    if form.is_valid():
        page = form.cleaned_data["page"] or 1
        try:
            found = people.people_page(
                form.cleaned_data["q"], **form.listing(), offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
            )
        except directory.DirectoryUnavailable:
            return _unavailable(request)
        except directory.DirectoryCannotSort:
            message = "The directory cannot sort this list: slapd needs its sssvlv overlay (see docs/console.md)."
            return render(request, "accounts/directory_unavailable.html", {"message": message}, status=503)
        page = found.offset // PAGE_SIZE + 1
        pages = max(1, -(-found.total // PAGE_SIZE))
        context.update(
            rows=found.rows,
            table_rows=people.render_rows(found.rows),
            sort_headers=people.sort_headers(request.GET, form.cleaned_data.get("sort") or "uid"),
            total=found.total,
            page=page,
            pages=pages,
            first_shown=found.offset + 1,
            last_shown=found.offset + len(found.rows),
            next_page=page + 1 if page < pages else None,
            previous_page=page - 1 if page > 1 else None,
            filtered=any(form.cleaned_data.get(name) for name in ("q", "role", "state")),
        )
    return render(request, "console/directory_list.html", context)


@staff_required
def user_detail(request: HttpRequest, uid: str) -> HttpResponse:
    try:
        person = _directory_user_or_404(uid)
        has_password = directory.has_password(uid)
    except directory.DirectoryUnavailable:
        return _unavailable(request)
    aliases = Alias.objects.filter(owner__username=uid).select_related("domain").order_by("domain__name", "local_part")
    suspensions = SenderSuspension.objects.filter(uid=uid)[:20]
    events = AuditEvent.objects.filter(target=uid).order_by("-created_at", "-id")[:RECENT_EVENTS]
    try:
        roles = directory_roles()
    except directory.DirectoryUnavailable:
        return _unavailable(request)
    context = {
        "person": person,
        "person_role": roles.of(uid),
        "has_password": has_password,
        "aliases": aliases,
        "suspensions": suspensions,
        "active_suspension": next((s for s in suspensions if s.is_active), None),
        "events": events,
        # Which actions the page offers (each view checks again): {"suspend": True, ...}.
        "may": {action.name.lower(): may_act_on(request.user, uid, action, roles) for action in Action},
    }
    return render(request, "console/user_detail.html", context)


@sensitive_post_parameters("new_password", "new_password_again")
@admin_required
def user_create(request: HttpRequest) -> HttpResponse:
    form = CreateUserForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            administration.create_mail_user(data["uid"], data["name"], data["mail"], data["new_password"], request)
        except directory.DirectoryUnavailable:
            form.add_error(None, UNAVAILABLE)
        except directory.DirectoryError as exc:
            form.add_error(None, f"The directory refused the new user: {exc}")
        else:
            messages.success(request, f"User {data['uid']} created with mailbox {data['mail']}.")
            return redirect("directory:detail", uid=data["uid"])
    return render(request, "console/user_create.html", {"form": form})


@sensitive_post_parameters("new_password", "new_password_again")
@admin_required
@acts_on(Action.RESET_PASSWORD)
@recent_second_factor
def user_reset_password(request: HttpRequest, uid: str) -> HttpResponse:
    try:
        person = _directory_user_or_404(uid)
    except directory.DirectoryUnavailable:
        return _unavailable(request)
    form = ResetPasswordForm(person, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            administration.reset_password(uid, form.cleaned_data["new_password"], request)
        except directory.DirectoryUnavailable:
            form.add_error(None, UNAVAILABLE)
        else:
            messages.success(request, f"The password of {uid} is set. Tell them through a safe channel.")
            return redirect("directory:detail", uid=uid)
    return render(request, "console/user_reset_password.html", {"form": form, "person": person})


@admin_required
@acts_on(Action.DISABLE)
@recent_second_factor
def user_disable(request: HttpRequest, uid: str) -> HttpResponse:
    try:
        person = _directory_user_or_404(uid)
    except directory.DirectoryUnavailable:
        return _unavailable(request)
    form = DisableAccountForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            administration.disable_account(uid, form.cleaned_data["reason"], request)
        except directory.DirectoryUnavailable:
            form.add_error(None, UNAVAILABLE)
        else:
            messages.success(request, f"{uid} can no longer sign in (here or for mail). Set a password to enable.")
            return redirect("directory:detail", uid=uid)
    return render(request, "console/user_disable.html", {"form": form, "person": person})


@admin_required
@acts_on(Action.SUSPEND)
@recent_second_factor
def user_suspend(request: HttpRequest, uid: str) -> HttpResponse:
    try:
        person = _directory_user_or_404(uid)
    except directory.DirectoryUnavailable:
        return _unavailable(request)
    form = SuspendForm(request.POST if request.method == "POST" else None)
    context = {"form": form, "person": person, "reject_text": settings.SUSPENSION_REJECT_TEXT}
    if request.method == "POST" and form.is_valid():
        assert isinstance(request.user, User)
        try:
            suspension.suspend(
                uid,
                form.cleaned_data["reason"],
                form.cleaned_data["until"],
                request.user,
                request,
                notify=form.cleaned_data["tell"],
            )
        except suspension.SuspensionBusy as exc:
            form.add_error(None, str(exc))
            return render(request, "console/user_suspend.html", context, status=503)
        except suspension.SuspensionError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{uid} is suspended: mail from any of their addresses is refused.")
            return redirect("directory:detail", uid=uid)
    return render(request, "console/user_suspend.html", context)


@admin_required
@require_POST
@acts_on(Action.REINSTATE)
@recent_second_factor
def user_reinstate(request: HttpRequest, uid: str) -> HttpResponse:
    assert isinstance(request.user, User)
    try:
        lifted = suspension.reinstate(uid, request.user, request)
    except suspension.SuspensionBusy as exc:
        messages.error(request, str(exc))
        return render(request, "accounts/directory_unavailable.html", {"message": str(exc)}, status=503)
    except suspension.SuspensionError as exc:
        messages.error(request, str(exc))
    else:
        if lifted:
            messages.success(request, f"{uid} is reinstated and may send mail again.")
        else:
            messages.info(request, f"{uid} is not suspended.")
    return redirect("directory:detail", uid=uid)
