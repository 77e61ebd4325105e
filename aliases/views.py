from collections.abc import Sequence

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import directory
from accounts.roles import Role, admin_required, role_of
from aliases import listing
from aliases.forms import (
    AliasBulkForm,
    AliasCreateForm,
    AliasEditForm,
    AliasSearchForm,
    CustomAliasForm,
    DomainForm,
    ListReturnForm,
    QuickSiteForm,
    RandomAliasForm,
    SiteAliasForm,
    proposal_for,
)
from aliases.models import Alias, Domain
from aliases.services import (
    AliasRefused,
    create_alias,
    delete_alias,
    delete_aliases,
    delete_domain,
    domain_uses,
    get_own_alias,
    save_domain,
    set_alias_enabled,
    set_aliases_enabled,
    update_alias,
)

CREATE_FORMS: dict[str, type[AliasCreateForm]] = {
    "site": SiteAliasForm,
    "random": RandomAliasForm,
    "custom": CustomAliasForm,
}


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


@login_required
def alias_list(request: HttpRequest) -> HttpResponse:
    search = AliasSearchForm(request.GET)
    now = timezone.now()
    owner_id = _user(request).pk
    counts = listing.state_counts(owner_id, search, now)
    if search.query:
        rows: Sequence[listing.Values] | QuerySet[Alias, listing.Values] = search.filter(
            listing.values(owner_id=owner_id), now
        )
    else:
        # Without a text search the filter's own count is the total: no second count query.
        rows = listing.OwnRows(owner_id, search, now, counts[search.state_key or "all"])
    page = Paginator(rows, settings.ALIASES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "rows": listing.render_rows(list(page.object_list), listing.RowContext.at(now)),
        "search": search,
        "states": listing.filter_links(search, counts),
        "headings": listing.headings(search),
        "quick": QuickSiteForm(),
        "pages": {
            "previous": search.link(page=page.previous_page_number()) if page.has_previous() else "",
            "next": search.link(page=page.next_page_number()) if page.has_next() else "",
        },
        "here": request.get_full_path(),
        "show_all": search.link(q=""),
    }
    return render(request, "aliases/alias_list.html", context)


@login_required
def alias_create(request: HttpRequest, kind: str) -> HttpResponse:
    form_class = CREATE_FORMS.get(kind)
    if form_class is None:
        return redirect("aliases:create", kind="site")
    owner = _user(request)
    is_admin = role_of(owner) == Role.ADMIN
    if request.method != "POST" or "suggest" in request.POST:
        # ?site=... or the "Suggest a name" button: fill in the name the app would choose.
        site = (request.POST if request.method == "POST" else request.GET).get("site", "")
        form = form_class(owner, is_admin=is_admin)
        if isinstance(form, SiteAliasForm):
            form.initial = _proposal(site, form)
        return render(request, "aliases/alias_create.html", {"form": form, "kind": kind})
    form = form_class(owner, request.POST, is_admin=is_admin)
    if form.is_valid():
        try:
            alias = create_alias(
                request,
                owner,
                local_part=form.chosen_local_part,
                domain=form.cleaned_data["domain"],
                kind=form.kind,
                site=form.remembered_site,
                label=form.cleaned_data["label"],
                expires_at=form.expires_at,
            )
        except AliasRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Your new address is {alias.address}. Mail to it reaches your mailbox.")
            return redirect("aliases:detail", pk=alias.pk)
    return render(request, "aliases/alias_create.html", {"form": form, "kind": kind})


def _proposal(site: str, form: SiteAliasForm) -> dict[str, str]:
    site = site.strip()[:255]
    domain = Domain.objects.filter(name=settings.ALIAS_DOMAIN, is_alias_domain=True).first()
    if not site or domain is None:
        return {"site": site}
    try:
        local_part = proposal_for(site, domain, form.person_guarded(domain))
    except ValidationError:
        local_part = ""  # hostile input or directory down: the form says so on submit
    return {"site": site, "local_part": local_part}


@login_required
def alias_detail(request: HttpRequest, pk: int) -> HttpResponse:
    alias = get_own_alias(request, pk)
    form = AliasEditForm(alias, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        update_alias(
            request,
            alias,
            label=form.cleaned_data["label"],
            expires_at=form.expires_at,
            vacation_replies=form.cleaned_data["vacation_replies"],
        )
        messages.success(request, f"{alias.address} is saved.")
        return redirect("aliases:detail", pk=alias.pk)
    return render(request, "aliases/alias_detail.html", {"alias": alias, "form": form})


@login_required
def alias_disable(request: HttpRequest, pk: int) -> HttpResponse:
    alias = get_own_alias(request, pk)  # before the method check: someone else's id is 404 either way
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    set_alias_enabled(request, alias, False)
    return _switched(request, alias, f"{alias.address} is switched off: mail to it is refused.")


@login_required
def alias_enable(request: HttpRequest, pk: int) -> HttpResponse:
    alias = get_own_alias(request, pk)  # before the method check: someone else's id is 404 either way
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    set_alias_enabled(request, alias, True)
    return _switched(request, alias, f"{alias.address} is switched on again.")


def _switched(request: HttpRequest, alias: Alias, message: str) -> HttpResponse:
    if request.headers.get("X-Requested-With") == "fetch":
        # From the list with scripts running: the new row replaces the old one, nothing reloads.
        row = listing.values_of(alias)
        return HttpResponse(listing.render_row(row, listing.RowContext.at(timezone.now()), message))
    messages.success(request, message)
    return redirect(_back(request, alias))


def _back(request: HttpRequest, alias: Alias | None = None) -> str:
    """Back to the list as it was (search, filter, sort, page) when the request came from it;
    otherwise to the alias, or to the list."""
    form = ListReturnForm(request.POST)
    if form.is_valid() and form.cleaned_data["next"]:
        return str(form.cleaned_data["next"])
    if request.POST.get("from") == "list" or alias is None:
        return reverse("aliases:list")
    return reverse("aliases:detail", args=[alias.pk])


@login_required
def alias_delete(request: HttpRequest, pk: int) -> HttpResponse:
    alias = get_own_alias(request, pk)
    if request.method == "POST":
        address = alias.address
        delete_alias(request, alias)
        messages.success(request, f"{address} is deleted. Mail to it is refused from now on.")
        return redirect("aliases:list")
    return render(request, "aliases/alias_delete.html", {"alias": alias})


@login_required
@require_POST
def alias_bulk(request: HttpRequest) -> HttpResponse:
    """Switch off, on or delete the ticked aliases: a confirmation first (the page, or the
    browser's question when scripts run), then one transaction."""
    form = AliasBulkForm(request.POST)
    if not form.is_valid():
        return render(request, "aliases/alias_bulk.html", {"form": form, "back": _back(request)})
    ids = form.cleaned_data["ids"]
    aliases = list(Alias.objects.filter(owner_id=request.user.pk, pk__in=ids).select_related("domain"))
    if len(aliases) != len(ids):
        raise Http404("No such alias.")  # someone else's id: as if it did not exist
    action = form.cleaned_data["action"]
    if form.cleaned_data["confirmed"] != "yes":
        confirm = AliasBulkForm(initial={**form.cleaned_data, "confirmed": "yes", "next": _back(request)})
        context = {"form": confirm, "aliases": aliases, "action": action, "back": _back(request)}
        return render(request, "aliases/alias_bulk.html", context)
    count = len(aliases)
    what = f"{count} address{'es' if count != 1 else ''}"
    if action == "delete":
        delete_aliases(request, aliases)
        messages.success(request, f"{what} deleted. Mail to them is refused from now on.")
    else:
        changed = set_aliases_enabled(request, aliases, action == "on")
        state = "on" if action == "on" else "off"
        already = count - len(changed)
        messages.success(request, f"{what} switched {state}" + (f" ({already} already were)." if already else "."))
    return redirect(_back(request))


@admin_required
def domain_list(request: HttpRequest) -> HttpResponse:
    domains = list(
        Domain.objects.select_related("catchall_owner").annotate(alias_count=Count("aliases")).order_by("name")
    )
    try:
        mailboxes: dict[str, int] | None = directory.mailbox_counts([domain.name for domain in domains])
    except directory.DirectoryError:  # unreachable, or no sssvlv overlay to count with
        mailboxes = None  # the list is still worth showing; the counts say they are unknown
    rows = [
        {
            "domain": domain,
            "mailboxes": None if mailboxes is None else mailboxes.get(domain.name, 0),
            "catchall_targets": 1 if domain.catchall_owner_id else len(domain.catchall_addresses),
        }
        for domain in domains
    ]
    return render(request, "aliases/domain_list.html", {"rows": rows, "directory_down": mailboxes is None})


@admin_required
def domain_create(request: HttpRequest) -> HttpResponse:
    return _domain_form(request, None)


@admin_required
def domain_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _domain_form(request, get_object_or_404(Domain.objects.select_related("catchall_owner"), pk=pk))


def _domain_form(request: HttpRequest, domain: Domain | None) -> HttpResponse:
    form = DomainForm(request.POST if request.method == "POST" else None, instance=domain)
    if request.method == "POST" and form.is_valid():
        saved = form.apply()
        owner = (form.cleaned_data["catchall_owner_uid"], form.catchall_owner_mail)
        save_domain(request, saved, catchall_owner=owner, created=domain is None)
        messages.success(request, f"{saved.name} is saved. The mail server's tables follow shortly.")
        return redirect("aliases:domains")
    return render(request, "aliases/domain_form.html", {"form": form, "domain": domain})


@admin_required
def domain_delete(request: HttpRequest, pk: int) -> HttpResponse:
    domain = get_object_or_404(Domain, pk=pk)
    try:
        uses = domain_uses(domain)
    except directory.DirectoryUnavailable:
        context = {"message": "The directory does not answer, so whether mailboxes use this domain is unknown."}
        return render(request, "accounts/directory_unavailable.html", context, status=503)
    if request.method == "POST" and not uses:
        try:
            delete_domain(request, domain)
        except AliasRefused as exc:
            messages.error(request, str(exc))
            return redirect("aliases:domain_edit", domain.pk)
        messages.success(request, f"{domain.name} is deleted. The mail server stops accepting mail for it shortly.")
        return redirect("aliases:domains")
    return render(request, "aliases/domain_delete.html", {"domain": domain, "uses": uses})
