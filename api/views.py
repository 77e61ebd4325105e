"""Pages for personal API tokens: make (shown once), list and revoke one's own; admins list
and revoke anyone's. The API itself is in api/endpoints.py and api/compat.py."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from accounts import directory
from accounts.forms import UNAVAILABLE
from accounts.roles import Action, admin_required, refusal
from api.forms import TokenCreateForm, TokenSearchForm
from api.models import ApiToken
from api.services import issue_token, revoke_token, tokens_of

TOKENS_PER_PAGE = 50


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


@login_required
def token_list(request: HttpRequest) -> HttpResponse:
    owner = _user(request)
    form = TokenCreateForm(request.POST if request.method == "POST" else None)
    made = None
    if request.method == "POST" and form.is_valid():
        token, raw = issue_token(
            request,
            owner,
            name=form.cleaned_data["name"],
            scope=form.cleaned_data["scope"],
            expires_at=form.expires_at,
        )
        made = {"token": token, "raw": raw}
        form = TokenCreateForm()
    context = {"form": form, "made": made, "tokens": tokens_of(owner), "base_url": _base_url(request)}
    response = render(request, "api/tokens.html", context)
    if made is not None:
        response["Cache-Control"] = "no-store"  # the only copy of the token: not in any cache
    return response


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


@login_required
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken.objects.select_related("owner"), pk=pk, owner_id=request.user.pk)
    if request.method == "POST":
        revoke_token(request, token)
        messages.success(request, f"The token “{token.name}” is revoked: it opens nothing from now on.")
        return redirect("tokens:list")
    return render(request, "api/token_revoke.html", {"token": token, "back": reverse("tokens:list")})


@admin_required
def all_tokens(request: HttpRequest) -> HttpResponse:
    search = TokenSearchForm(request.GET)
    # Active (not revoked) first, on SQLite and PostgreSQL alike (they sort NULL differently).
    active_first = F("revoked_at").asc(nulls_first=True)
    tokens = ApiToken.objects.select_related("owner", "revoked_by").order_by(active_first, "-created_at", "-id")
    if search.query:
        tokens = tokens.filter(owner__username__icontains=search.query)
    page = Paginator(tokens, TOKENS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "api/all_tokens.html", {"page": page, "search": search})


@admin_required
def staff_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken.objects.select_related("owner"), pk=pk)
    try:
        reason = refusal(request.user, token.owner.get_username(), Action.REVOKE_API_TOKEN)
    except directory.DirectoryUnavailable:
        return render(request, "accounts/directory_unavailable.html", {"message": UNAVAILABLE}, status=503)
    if reason is not None:
        return render(request, "accounts/refused.html", {"message": reason}, status=403)
    if request.method == "POST":
        revoke_token(request, token)
        messages.success(request, f"{token.owner.get_username()}’s token “{token.name}” is revoked.")
        return redirect("tokens:all")
    return render(request, "api/token_revoke.html", {"token": token, "back": reverse("tokens:all")})


@login_required
def api_help(request: HttpRequest) -> HttpResponse:
    context = {
        "base_url": _base_url(request),
        "rate_limit": settings.API_RATE_LIMIT,
        "rate_window": settings.API_RATE_WINDOW,
    }
    return render(request, "api/help.html", context)
