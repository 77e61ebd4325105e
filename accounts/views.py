from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts import directory, session_check
from accounts.forms import UNAVAILABLE, PasswordChangeForm, SignInForm
from audit.models import record_event


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
def sign_in(request: HttpRequest) -> HttpResponse:
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    form = SignInForm(request, data=request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        assert form.user is not None
        login(request, form.user)
        session_check.remember_password(request)
        record_event("sign-in", request=request, target=form.user.get_username())
        return redirect(next_url or "home")
    context = {"form": form, "next": next_url, "help_text": settings.SIGN_IN_HELP}
    return render(request, "accounts/sign_in.html", context)


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    messages.info(request, "You are signed out.")
    return redirect("accounts:login")


@sensitive_post_parameters("current_password", "new_password", "new_password_again")
@login_required
def password_change(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)
    form = PasswordChangeForm(request.user, data=request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        uid = request.user.get_username()
        try:
            directory.set_password(uid, form.cleaned_data["new_password"])
        except directory.DirectoryUnavailable:
            form.add_error(None, UNAVAILABLE)
        else:
            # The other sessions of this person end (a new session hash); this one goes on.
            request.user.set_unusable_password()
            request.user.save(update_fields=["password"])
            update_session_auth_hash(request, request.user)
            session_check.remember_password(request)
            record_event("password.change", request=request, target=uid)
            messages.success(request, "Your password is changed. Use the new one from now on, for mail too.")
            return redirect("accounts:password")
    return render(request, "accounts/password_change.html", {"form": form})
