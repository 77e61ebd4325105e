"""Second-factor pages. Some serve two kinds of visitor: a signed-in person (managing their
factors, or confirming one before a sensitive action) and a pending one (password given,
second factor not yet: mfa/pending.py), who is signed in once the factor is given."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts import assurance, directory
from accounts.forms import UNAVAILABLE
from accounts.roles import Action, acts_on, role_of, staff_required
from mfa import passkeys, pending, services, totp
from mfa.forms import CodeForm, NewPasskeyForm, PasskeyAnswerForm
from mfa.passkeys import PasskeyRefused


def _next_url(request: HttpRequest, fallback: str = "") -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or fallback
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return ""


def _person(request: HttpRequest) -> tuple[User | None, pending.Pending | None]:
    """The signed-in user, or the pending one (with their pending sign-in)."""
    if isinstance(request.user, User) and request.user.is_authenticated:
        return request.user, None
    waiting = pending.pending_of(request)
    if waiting is None:
        return None, None
    return pending.user_of(waiting), waiting


def _unavailable(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/directory_unavailable.html", {"message": UNAVAILABLE}, status=503)


def _given(request: HttpRequest, user: User, waiting: pending.Pending | None, method: str) -> HttpResponse | None:
    """The factor is right: sign the pending person in, or refresh a signed-in one's record.
    None when that worked; otherwise the response to send."""
    if waiting is None:
        assurance.record(request, method)
        return None
    try:
        pending.complete(request, waiting, method)
    except pending.SignInExpired as exc:
        messages.info(request, str(exc))
        return redirect("accounts:login")
    except directory.DirectoryUnavailable:
        return _unavailable(request)
    return None


@sensitive_post_parameters("code")
@never_cache
def verify(request: HttpRequest) -> HttpResponse:
    user, waiting = _person(request)
    if user is None:
        return redirect("accounts:login")
    if not services.has_second_factor(user):
        return redirect("mfa:enrol" if waiting is not None else "mfa:security")
    next_url = _next_url(request, waiting.next_url if waiting else "")
    form = CodeForm(request.POST if request.method == "POST" and "code" in request.POST else None)
    passkey_error = ""
    if request.method == "POST":
        method = None
        if "credential" in request.POST:
            answer = PasskeyAnswerForm(request.POST)
            try:
                if not answer.is_valid():
                    raise PasskeyRefused("No passkey answer arrived. Please try again.")
                services.check_passkey(request, user, answer.cleaned_data["credential"])
                method = "passkey"
            except PasskeyRefused as exc:
                passkey_error = str(exc)
        elif form.is_valid():
            try:
                method = services.check_code(request, user, form.cleaned_data["code"], form.kind)
            except services.CodeRefused as exc:
                form.add_error("code", str(exc))
        if method is not None:
            refused = _given(request, user, waiting, method)
            if refused is not None:
                return refused
            if method == "recovery code":
                left = services.factors_of(user).recovery_codes_left
                messages.warning(
                    request, f"You used a recovery code; {left} left. Make new ones on the Second factor page."
                )
            return redirect(next_url or "home")
    factors = services.factors_of(user)
    context = {
        "form": form,
        "factors": factors,
        "passkey_options": services.passkey_options(request, user),
        "passkey_error": passkey_error,
        "next": next_url,
        "signing_in": waiting is not None,
        "max_age_minutes": settings.SECOND_FACTOR_MAX_AGE // 60,
        "usable_here": passkeys.usable_here(request),
    }
    return render(request, "mfa/verify.html", context)


@never_cache
def enrol(request: HttpRequest) -> HttpResponse:
    user, waiting = _person(request)
    if user is None:
        return redirect("accounts:login")
    if waiting is None:
        return redirect("mfa:security")
    if services.has_second_factor(user):
        return redirect("mfa:verify")
    context = {"required": services.required_for(user), "person_role": role_of(user)}
    return render(request, "mfa/enrol.html", context)


def _enrolling(request: HttpRequest) -> tuple[User, pending.Pending | None] | HttpResponse:
    """Who adds a factor: a signed-in person, or a pending one who has none yet (a pending
    person with a factor gives it first: adding another must not skip it)."""
    user, waiting = _person(request)
    if user is None:
        return redirect("accounts:login")
    if waiting is not None and services.has_second_factor(user):
        return redirect("mfa:verify")
    return user, waiting


def _enrolled(request: HttpRequest, user: User, waiting: pending.Pending | None, what: str) -> HttpResponse:
    """After a new factor: sign in or refresh, and show new recovery codes if none are left."""
    refused = _given(request, user, waiting, "passkey" if what.startswith("passkey") else "totp")
    if refused is not None:
        return refused
    codes = None
    if not services.factors_of(user).recovery_codes_left:
        codes = services.new_recovery_codes(request, user)
    next_url = (waiting.next_url if waiting else "") or ""
    return render(request, "mfa/enrolled.html", {"what": what, "codes": codes, "next": next_url or "/"})


@sensitive_post_parameters("code")
@never_cache
@assurance.recent_second_factor
def totp_add(request: HttpRequest) -> HttpResponse:
    enrolling = _enrolling(request)
    if isinstance(enrolling, HttpResponse):
        return enrolling
    user, waiting = enrolling
    if services.factors_of(user).totp is not None:
        messages.info(request, "You already have an authenticator app. Remove it first to set up another.")
        return redirect("mfa:verify" if waiting else "mfa:security")
    secret = services.totp_enrolment_secret(request)
    form = CodeForm(request.POST if request.method == "POST" else None, recovery=False)
    if request.method == "POST" and form.is_valid():
        try:
            services.confirm_totp(request, user, form.cleaned_data["code"])
        except services.CodeRefused as exc:
            form.add_error("code", str(exc))
        else:
            return _enrolled(request, user, waiting, "authenticator app")
    uri = totp.provisioning_uri(secret, user.get_username(), settings.SECOND_FACTOR_ISSUER)
    context = {
        "form": form,
        "qr_code": totp.qr_code_svg(uri),
        "secret": totp.grouped(secret),
        "signing_in": waiting is not None,
    }
    return render(request, "mfa/totp_add.html", context)


@sensitive_post_parameters("credential")
@never_cache
@assurance.recent_second_factor
def passkey_add(request: HttpRequest) -> HttpResponse:
    enrolling = _enrolling(request)
    if isinstance(enrolling, HttpResponse):
        return enrolling
    user, waiting = enrolling
    taken = {p.name for p in services.factors_of(user).passkeys}
    form = NewPasskeyForm(request.POST if request.method == "POST" else None, taken=taken)
    if request.method == "POST" and form.is_valid():
        name = form.cleaned_data["name"]
        try:
            services.add_passkey(request, user, name, form.cleaned_data["credential"])
        except PasskeyRefused as exc:
            form.add_error(None, str(exc))
        else:
            return _enrolled(request, user, waiting, f"passkey “{name}”")
    context = {
        "form": form,
        "options": services.new_passkey_options(request, user),
        "signing_in": waiting is not None,
        "usable_here": passkeys.usable_here(request),
        "host_name_url": f"{request.scheme}://localhost:{request.get_port()}{request.path}",
    }
    return render(request, "mfa/passkey_add.html", context)


@login_required
@never_cache
def security(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)
    context = {
        "factors": services.factors_of(request.user),
        "required": services.required_for(request.user),
        "assurance": assurance.assurance_of(request),
    }
    return render(request, "mfa/security.html", context)


def _removed(request: HttpRequest, **which: object) -> HttpResponse:
    assert isinstance(request.user, User)
    try:
        what = services.remove_own(request, request.user, **which)  # type: ignore[arg-type]
    except LookupError:
        raise Http404("no such factor") from None
    except services.LastFactor as exc:
        messages.error(request, str(exc))
    else:
        if not services.has_second_factor(request.user):
            assurance.record(request, assurance.PASSWORD_ONLY)
        messages.success(request, f"Removed: {what}.")
    return redirect("mfa:security")


@login_required
@require_POST
@assurance.recent_second_factor
def totp_remove(request: HttpRequest) -> HttpResponse:
    return _removed(request, totp_device=True)


@login_required
@require_POST
@assurance.recent_second_factor
def passkey_remove(request: HttpRequest, pk: int) -> HttpResponse:
    return _removed(request, passkey_id=pk)


@login_required
@require_POST
@never_cache
@assurance.recent_second_factor
def recovery_codes(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)
    if not services.has_second_factor(request.user):
        messages.info(request, "Recovery codes stand in for a second factor: set one up first.")
        return redirect("mfa:security")
    codes = services.new_recovery_codes(request, request.user)
    return render(request, "mfa/recovery_codes.html", {"codes": codes})


@staff_required
@acts_on(Action.RESET_SECOND_FACTOR)
@assurance.recent_second_factor
def reset(request: HttpRequest, uid: str) -> HttpResponse:
    try:
        person = directory.get_user(uid)
    except directory.DirectoryUnavailable:
        return _unavailable(request)
    if person is None:
        raise Http404("no such user")
    target = User.objects.filter(username=uid).first()
    factors = services.factors_of(target) if target is not None else None
    if request.method == "POST":
        removed = services.reset(request, uid)
        if removed is None:
            messages.info(request, f"{uid} has no second factor: nothing to remove.")
        else:
            messages.success(
                request,
                f"The second factor of {uid} is removed ({removed.describe()}); they are signed out and told by mail.",
            )
        return redirect("directory:detail", uid=uid)
    return render(request, "mfa/reset.html", {"person": person, "factors": factors})
