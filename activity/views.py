from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.roles import admin_required
from activity.forms import BlockForm
from activity.models import SenderBlock
from activity.services import (
    block_leak_sender,
    create_block,
    dismiss_leak_flag,
    get_own_block,
    get_own_leak_flag,
    remove_block,
)
from aliases.services import get_own_alias

OWN_SCOPES = (SenderBlock.Scope.ALIAS, SenderBlock.Scope.ACCOUNT)


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _blocked_message(request: HttpRequest, block: SenderBlock) -> None:
    where = {"alias": "to this alias", "account": "to any of your addresses"}.get(block.scope, "to anyone here")
    messages.success(request, f"Mail from {block.shown} {where} is refused from now on.")


@login_required
def alias_block(request: HttpRequest, pk: int) -> HttpResponse:
    alias = get_own_alias(request, pk)  # before the method check: someone else's id is 404 either way
    if request.method != "POST":
        return redirect("aliases:detail", pk=alias.pk)
    form = BlockForm(request.POST, scopes=OWN_SCOPES)
    if not form.is_valid():
        return render(request, "activity/block_refused.html", {"form": form, "alias": alias})
    scope = form.cleaned_data["scope"]
    block = create_block(
        request,
        scope=scope,
        sender=form.cleaned_data["value"],
        is_domain=form.is_domain,
        owner=_user(request),
        alias=alias if scope == SenderBlock.Scope.ALIAS else None,
    )
    _blocked_message(request, block)
    return redirect("aliases:detail", pk=alias.pk)


def _block_page(request: HttpRequest, scope: str, owner: User | None, shown: QuerySet[SenderBlock]) -> HttpResponse:
    """A list of blocks and a form adding one of this scope (account-wide, or organisation-wide)."""
    form = BlockForm(request.POST or None, scopes=(scope,))
    if request.method == "POST" and form.is_valid():
        value, is_domain = form.cleaned_data["value"], form.is_domain
        _blocked_message(request, create_block(request, scope=scope, sender=value, is_domain=is_domain, owner=owner))
        return redirect(request.path)
    template = "activity/organisation.html" if scope == SenderBlock.Scope.ORGANISATION else "activity/blocks.html"
    return render(request, template, {"blocks": shown.select_related("alias__domain"), "form": form})


@login_required
def blocks(request: HttpRequest) -> HttpResponse:
    """The person's blocks (per alias and account-wide), with what each stopped; a new account-wide one."""
    mine = SenderBlock.objects.filter(owner_id=request.user.pk, scope__in=OWN_SCOPES)
    return _block_page(request, SenderBlock.Scope.ACCOUNT, _user(request), mine)


@login_required
def unblock(request: HttpRequest, pk: int) -> HttpResponse:
    block = get_own_block(request, pk)  # before the method check: someone else's id is 404 either way
    if request.method != "POST":
        return redirect("activity:blocks")
    alias = block.alias
    remove_block(request, block)
    messages.success(request, f"{block.shown} may write again.")
    if request.POST.get("from") == "alias" and alias is not None:
        return redirect("aliases:detail", pk=alias.pk)
    return redirect("activity:blocks")


@login_required
def leak_dismiss(request: HttpRequest, pk: int) -> HttpResponse:
    flag = get_own_leak_flag(request, pk)
    if request.method == "POST":
        dismiss_leak_flag(request, flag)
        messages.success(request, f"The warning about {flag.sender_domain} is dismissed.")
    return redirect("aliases:detail", pk=flag.alias_id)


@login_required
def leak_block(request: HttpRequest, pk: int) -> HttpResponse:
    flag = get_own_leak_flag(request, pk)
    if request.method == "POST":
        _blocked_message(request, block_leak_sender(request, flag))
    return redirect("aliases:detail", pk=flag.alias_id)


@admin_required
def organisation(request: HttpRequest) -> HttpResponse:
    """Senders and domains refused for everyone here (the deny list kept by hand before)."""
    everyone = SenderBlock.objects.filter(scope=SenderBlock.Scope.ORGANISATION)
    return _block_page(request, SenderBlock.Scope.ORGANISATION, None, everyone)


@require_POST
@admin_required
def organisation_unblock(request: HttpRequest, pk: int) -> HttpResponse:
    block = get_object_or_404(SenderBlock, pk=pk, scope=SenderBlock.Scope.ORGANISATION)
    remove_block(request, block)
    messages.success(request, f"{block.shown} may write to the organisation again.")
    return redirect("activity:organisation")
