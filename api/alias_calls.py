"""What the API does to aliases, through the web's own forms and service functions.

Every value a client sends is bound to the same Django form the web page uses (aliases/forms.py)
and every change goes through aliases/services.py: one validation path, the same messages, the
same limits, the same "only your own" rule (get_own_alias). Both the API of our own
(api/endpoints.py) and the compatible ones (api/compat.py) call these functions.
"""

from dataclasses import dataclass, field

from django import forms
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.http import HttpRequest
from django.utils import timezone

from accounts.roles import Role, role_of
from aliases.activity_columns import with_activity
from aliases.addresses import normalize_domain, site_name
from aliases.forms import (
    AliasCreateForm,
    AliasEditForm,
    AliasSearchForm,
    CustomAliasForm,
    RandomAliasForm,
    SiteAliasForm,
    proposal_for,
)
from aliases.models import Alias, Domain
from aliases.services import AliasRefused, create_alias, creation_refusal, update_alias, usable_domains

MAX_SITE = 255  # as SiteAliasForm's site field
# The kinds of the web's "New address" pages, and their forms.
CREATE_FORMS: dict[str, type[AliasCreateForm]] = {
    "site": SiteAliasForm,
    "random": RandomAliasForm,
    "custom": CustomAliasForm,
}
# Form field -> the name the API uses for it.
API_NAMES = {"label": "note", "__all__": "non_field"}


@dataclass
class Refused(Exception):
    """A request the forms or the rules refuse; nothing was changed."""

    message: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    status: int = 400


def refused_by(form: forms.Form) -> Refused:
    fields = {API_NAMES.get(name, name): [str(m) for m in messages] for name, messages in form.errors.items()}
    first = next(iter(fields.get("non_field", [])), None) or next(iter(fields.values()))[0]
    # The directory not answering is not the client's mistake.
    codes = {error.code for errors in form.errors.as_data().values() for error in errors}
    return Refused(first, fields, 503 if "unavailable" in codes else 400)


def is_admin(user: User) -> bool:
    return role_of(user) == Role.ADMIN


def create(
    request: HttpRequest,
    owner: User,
    kind: str,
    *,
    site: str = "",
    local_part: str = "",
    domain: str = "",
    note: str = "",
    expires_on: str = "",
    another: bool = False,
) -> Alias:
    """A new alias of `kind` (site, random, custom), as the web's "New address" pages make it.
    `domain` is a domain name (empty: the default alias domain). A site that already has one of
    the person's aliases is refused with the existing address named, unless `another` (what
    "Make another one anyway" posts; password managers always want a fresh address)."""
    form_class = CREATE_FORMS.get(kind)
    if form_class is None:
        choose = "Choose the kind of address: site, random or custom."
        raise Refused(choose, {"kind": [choose]})
    data = {"site": site, "local_part": local_part, "domain": _domain_choice(owner, domain), "label": note}
    data["expires_on"] = expires_on
    if another:
        data["another"] = "1"
    form = form_class(owner, data, is_admin=is_admin(owner))
    if not form.is_valid():
        raise refused_by(form)
    try:
        return create_alias(
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
        raise Refused(str(exc), {"non_field": [str(exc)]}) from None


def _domain_choice(owner: User, name: str) -> str:
    """The form's choice (a domain's id) for a domain name; an unknown name goes to the form as
    it came, and the form refuses it as the web page would."""
    if not name:
        return ""
    try:
        wanted = normalize_domain(name.strip())
    except ValidationError:
        return name  # not a domain name at all (nor anything the database should be asked about)
    found = usable_domains(owner).filter(name=wanted).values_list("pk", flat=True).first()
    return str(found) if found is not None else name


def update(
    request: HttpRequest,
    alias: Alias,
    *,
    note: str | None = None,
    expires_on: str | None = None,
    vacation_replies: bool | None = None,
) -> None:
    """Change what is given (None: keep), through the alias page's form."""
    current = AliasEditForm(alias).initial
    day = current["expires_on"]
    vacation = current["vacation_replies"] if vacation_replies is None else vacation_replies
    data = {
        "label": current["label"] if note is None else note,
        "expires_on": (day.isoformat() if day else "") if expires_on is None else expires_on,
        "vacation_replies": "on" if vacation else "",
    }
    form = AliasEditForm(alias, data)
    if not form.is_valid():
        raise refused_by(form)
    cleaned = form.cleaned_data
    update_alias(
        request, alias, label=cleaned["label"], expires_at=form.expires_at, vacation_replies=cleaned["vacation_replies"]
    )


def search(owner: User, query: dict[str, str], page: int) -> Page:
    """The alias list page's search (q, sort), one page of ALIASES_PER_PAGE."""
    form = AliasSearchForm(query)
    if not form.is_valid():
        raise refused_by(form)
    aliases = with_activity(Alias.objects.filter(owner_id=owner.pk).select_related("domain"))
    return Paginator(form.filter(aliases, timezone.now()), settings.ALIASES_PER_PAGE).get_page(page)


@dataclass
class Suggestion:
    hostname: str
    local_part: str
    domain: str


def suggest(owner: User, hostname: str) -> Suggestion:
    """The name the "New address for a site" page would propose for this site."""
    form = SiteAliasForm(owner, is_admin=is_admin(owner))
    domain = form.default_domain
    if domain is None:
        raise Refused("There is no alias domain yet. Ask the mail administrators to add one.")
    try:
        site = site_of(hostname)
        if not site.strip():
            raise ValidationError("Enter the site's address or name.")
        local_part = proposal_for(site, domain, form.person_guarded(domain))
    except ValidationError as exc:
        raise Refused(exc.messages[0], {"hostname": exc.messages}, 503 if exc.code == "unavailable" else 400) from None
    return Suggestion(hostname=site, local_part=local_part, domain=domain.name)


def site_of(hostname: str) -> str:
    """A host name from a query string, as the site field of the web form takes it."""
    if len(hostname) > MAX_SITE:
        raise ValidationError(f"The site may be at most {MAX_SITE} characters long.", code="length")
    return site_name(hostname)


def default_domain(owner: User) -> Domain | None:
    return SiteAliasForm(owner).default_domain


def can_create(owner: User) -> str | None:
    """Why the person may not make an alias now (None: they may)."""
    return creation_refusal(owner, timezone.now())
