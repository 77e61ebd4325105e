from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts import directory
from accounts.forms import DIRECTORY_MAX_PAGE
from accounts.roles import Action, acts_on, staff_required
from outofoffice.evaluation import evaluate, is_internal_sender
from outofoffice.forms import ConfirmClearForm, PreviewForm, ReturnToForm, UserSearchForm, VacationForm
from outofoffice.models import VacationReply
from outofoffice.replies import reply_text
from outofoffice.rules import parse_incoming
from outofoffice.status import AWAY_SOON, away_now, away_soon, vacation_status
from outofoffice.vacations import clear_vacation, save_vacation

PAGE_SIZE = 25
AWAY_LIST_LENGTH = 200
UNAVAILABLE = "The directory is not answering right now. Nothing was changed; please try again in a minute."


def _vacation_of(uid: str, address: str) -> VacationReply:
    """The vacation reply of this user, or a new unsaved one; its address follows the directory."""
    vacation = VacationReply.objects.filter(uid=uid).first() or VacationReply(uid=uid)
    vacation.address = address.lower()
    return vacation


def own_vacation(request: HttpRequest) -> VacationReply:
    assert isinstance(request.user, User)
    uid = request.user.get_username()
    address = request.user.email
    if not address:
        found = directory.get_user(uid)
        if found is None or not found.mail:
            raise Http404("You have no mailbox.")
        address = found.mail
    return _vacation_of(uid, address)


def vacation_for_staff(uid: str) -> tuple[directory.DirectoryUser, VacationReply]:
    """Any user's vacation, for helpdesk and admins; 404 for anyone not in the directory."""
    found = directory.get_user(uid)
    if found is None or not found.mail:
        raise Http404("No such user.")
    return found, _vacation_of(found.uid, found.mail)


def _edit(
    request: HttpRequest,
    vacation: VacationReply,
    context: dict[str, object],
    done_url: str,
    refusal: str | None = None,
) -> HttpResponse:
    """`refusal`: why this submission is refused as a whole (shown, nothing saved)."""
    # The stored reply's status, taken before the form writes the posted values into it.
    status = vacation_status(vacation if vacation.pk else None)
    form = VacationForm(request.POST if request.method == "POST" else None, instance=vacation)
    if refusal is not None and form.is_bound:
        form.add_error(None, refusal)
    if request.method == "POST" and form.is_valid():
        saved = form.save(commit=False)
        save_vacation(saved, request)
        messages.success(request, f"Vacation reply saved: {vacation_status(saved).sentence}.")
        return redirect(done_url)
    return render(
        request, "outofoffice/vacation.html", {**context, "form": form, "vacation": vacation, "status": status}
    )


@login_required
def vacation(request: HttpRequest) -> HttpResponse:
    return _edit(
        request,
        own_vacation(request),
        {"preview_url": reverse("outofoffice:preview"), "own": True},
        reverse("outofoffice:vacation"),
    )


def _preview(
    request: HttpRequest, vacation: VacationReply, context: dict[str, object], own: bool = True
) -> HttpResponse:
    """own=False: staff previewing someone else's reply, who must not learn from it who has
    written to that person (the per-sender reply log is left out of the decision)."""
    form = PreviewForm(request.POST if request.method == "POST" else None)
    result = reply = None
    if request.method == "POST" and form.is_valid():
        headers = form.cleaned_data["headers"].replace("\r\n", "\n").strip("\n")
        # No headers given: an ordinary message to this mailbox (the question is who writes).
        headers = headers or f"To: {vacation.address}\nSubject: A test message"
        raw = headers + "\n\n"
        incoming = parse_incoming(form.cleaned_data["sender"], raw.encode("utf-8"))
        try:
            result = evaluate(vacation.address, incoming, timezone.now(), with_history=own)
        except directory.DirectoryUnavailable:
            form.add_error(None, UNAVAILABLE)
        if result is not None and result.decision.reply and result.vacation is not None:
            reply = {
                "subject": f"Auto: {result.vacation.subject}",
                "text": reply_text(result.vacation, is_internal_sender(incoming.sender)),
            }
    context = {**context, "form": form, "vacation": vacation, "result": result, "reply": reply}
    return render(request, "outofoffice/preview.html", context)


@login_required
def preview(request: HttpRequest) -> HttpResponse:
    return _preview(request, own_vacation(request), {"back_url": reverse("outofoffice:vacation")})


def _unavailable(request: HttpRequest) -> HttpResponse:
    messages.error(request, UNAVAILABLE)
    return redirect("outofoffice:helpdesk")


@staff_required
def helpdesk(request: HttpRequest) -> HttpResponse:
    form = UserSearchForm(request.GET or None)
    users: list[directory.DirectoryUser] = []
    more = False
    page = max(0, min(int(request.GET["page"]) if request.GET.get("page", "").isdigit() else 0, DIRECTORY_MAX_PAGE - 1))
    if form.is_valid() and form.cleaned_data["q"]:
        try:
            users, more = directory.search_users(form.cleaned_data["q"], limit=PAGE_SIZE, offset=page * PAGE_SIZE)
            more = more and page < DIRECTORY_MAX_PAGE - 1
        except directory.DirectoryUnavailable:
            form.add_error(None, UNAVAILABLE)
    states = {v.uid: v for v in VacationReply.objects.filter(uid__in=[u.uid for u in users])}
    rows = [(user, states.get(user.uid)) for user in users]
    now = timezone.now()
    context = {
        "form": form,
        "rows": rows,
        "more": more,
        "page": page,
        "away_now": away_now(now)[:AWAY_LIST_LENGTH],
        "away_soon": away_soon(now)[:AWAY_LIST_LENGTH],
        "soon_days": AWAY_SOON.days,
    }
    return render(request, "outofoffice/helpdesk.html", context)


@staff_required
@acts_on(Action.VACATION)
def helpdesk_user(request: HttpRequest, uid: str) -> HttpResponse:
    try:
        target, vacation = vacation_for_staff(uid)
    except directory.DirectoryUnavailable:
        return _unavailable(request)
    # The person's directory page edits the reply in place and is where saving leads back to.
    user_page = reverse("directory:detail", args=[target.uid])
    back_form = ReturnToForm(request.POST if request.method == "POST" else None, allowed=user_page)
    back_form.is_valid()
    back = back_form.cleaned_data.get("next", "") if back_form.is_bound else ""
    refusal = str(back_form.errors["next"][0]) if back_form.is_bound and back_form.errors else None
    context = {
        "target": target,
        "preview_url": reverse("outofoffice:helpdesk_preview", args=[target.uid]),
        "clear_url": reverse("outofoffice:helpdesk_clear", args=[target.uid]),
        "next": back,
    }
    done = back or reverse("outofoffice:helpdesk_user", args=[target.uid])
    return _edit(request, vacation, context, done, refusal)


@staff_required
@acts_on(Action.VACATION)
@require_http_methods(["GET", "POST"])
def helpdesk_clear(request: HttpRequest, uid: str) -> HttpResponse:
    """Clearing deletes the user's text for good: a page says what goes, and only its POST clears."""
    try:
        target, vacation = vacation_for_staff(uid)
    except directory.DirectoryUnavailable:
        return _unavailable(request)
    back = reverse("outofoffice:helpdesk_user", args=[target.uid])
    if vacation.pk is None:
        messages.info(request, f"{target.uid} has no vacation reply to clear.")
        return redirect(back)
    form = ConfirmClearForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        clear_vacation(vacation, request)
        messages.success(request, f"The vacation reply of {target.uid} is cleared.")
        return redirect(back)
    context = {"target": target, "vacation": vacation, "form": ConfirmClearForm(initial={"confirm": "yes"})}
    return render(request, "outofoffice/clear_confirm.html", {**context, "back_url": back})


@staff_required
@acts_on(Action.VACATION)
def helpdesk_preview(request: HttpRequest, uid: str) -> HttpResponse:
    try:
        target, vacation = vacation_for_staff(uid)
    except directory.DirectoryUnavailable:
        return _unavailable(request)
    return _preview(
        request,
        vacation,
        {"target": target, "back_url": reverse("outofoffice:helpdesk_user", args=[target.uid])},
        own=False,
    )
