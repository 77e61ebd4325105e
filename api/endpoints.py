"""mailadmin's own alias API, under /api/mailadmin/ (OpenAPI: /api/mailadmin/openapi.json).

django-ninja turns the typed signatures and pydantic schemas below into request parsing,
response serialisation and the OpenAPI description. Values pass through the schemas as plain
text and are validated by the web's own forms (api/alias_calls.py), so a value refused on the
web page is refused here with the same message.
"""

from datetime import datetime
from typing import Any, Literal

from django.conf import settings
from django.http import HttpRequest
from ninja import NinjaAPI, Schema, Status

from aliases.models import Alias
from aliases.services import delete_alias, get_own_alias, set_alias_enabled, usable_domains
from api import alias_calls, errors
from api.auth import BearerToken, one_directory_connection, token_of
from api.models import ApiToken

READ = BearerToken(ApiToken.Scope.READ)
MANAGE = BearerToken(ApiToken.Scope.MANAGE)

api = NinjaAPI(
    title="mailadmin alias API",
    version="1",
    description="Your aliases, with a personal API token (Authorization: Bearer mat_…). See docs/api.md.",
    urls_namespace="api",
    docs_url=None,  # the interactive page would load its script from a CDN; the JSON is enough
    auth=READ,
)
api.add_decorator(one_directory_connection, mode="view")


def _shape(message: str, fields: dict[str, list[str]], status: int) -> dict[str, Any]:
    return {"error": message, "fields": fields} if fields else {"error": message}


errors.install(api, _shape)


class ErrorOut(Schema):
    error: str
    fields: dict[str, list[str]] = {}


class AliasOut(Schema):
    id: int
    address: str
    local_part: str
    domain: str
    kind: str
    site: str
    note: str
    enabled: bool
    live: bool
    expires_at: datetime | None
    vacation_replies: bool
    created_at: datetime
    updated_at: datetime
    # Alias activity (the list only; null on other calls): last mail, mails and refusals in 30
    # days, and the sender domain of an open leak warning.
    last_mail_at: datetime | None = None
    mails_30d: int | None = None
    refused_30d: int | None = None
    possibly_leaked_by: str | None = None

    @staticmethod
    def of(alias: Alias) -> "AliasOut":
        return AliasOut(
            id=alias.pk,
            address=alias.address,
            local_part=alias.local_part,
            domain=alias.domain.name,
            kind=alias.kind,
            site=alias.site,
            note=alias.label,
            enabled=alias.enabled,
            live=alias.is_live(),
            expires_at=alias.expires_at,
            vacation_replies=alias.vacation_replies,
            created_at=alias.created_at,
            updated_at=alias.updated_at,
            last_mail_at=getattr(alias, "last_mail_at", None),
            mails_30d=getattr(alias, "mails_30d", None),
            refused_30d=getattr(alias, "refused_30d", None),
            possibly_leaked_by=getattr(alias, "leak_domain", None),
        )


class AliasPage(Schema):
    count: int
    page: int
    pages: int
    per_page: int
    items: list[AliasOut]


class AliasCreateIn(Schema):
    kind: Literal["site", "random", "custom"] = "site"
    site: str = ""
    local_part: str = ""
    domain: str = ""
    note: str = ""
    expires_on: str = ""
    # A site that already has one of your aliases is refused (the message names it) unless true.
    another: bool = False


class AliasUpdateIn(Schema):
    note: str | None = None
    expires_on: str | None = None
    vacation_replies: bool | None = None


class Deleted(Schema):
    deleted: str


class DomainOut(Schema):
    name: str
    alias_domain: bool
    personal_catchall: bool
    default: bool


class SuggestionOut(Schema):
    hostname: str
    local_part: str
    domain: str
    address: str


class TokenOut(Schema):
    name: str
    scope: str
    owner: str
    created_at: datetime
    expires_at: datetime | None


REFUSALS: dict[int, type[Schema]] = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 429: ErrorOut, 503: ErrorOut}


@api.get("/token", response={200: TokenOut, **REFUSALS}, url_name="token")
def token_info(request: HttpRequest) -> TokenOut:
    """The token this request was made with (a cheap call to check a token works)."""
    token = token_of(request)
    return TokenOut(
        name=token.name,
        scope=token.scope,
        owner=token.owner.get_username(),
        created_at=token.created_at,
        expires_at=token.expires_at,
    )


@api.get("/aliases", response={200: AliasPage, **REFUSALS}, url_name="aliases")
def list_aliases(request: HttpRequest, q: str = "", sort: str = "new", page: int = 1) -> AliasPage:
    """Your aliases, newest first (sort: new, old, address, site, note), searched in address,
    site and note, ALIASES_PER_PAGE a page."""
    found = alias_calls.search(token_of(request).owner, {"q": q, "sort": sort}, page)
    return AliasPage(
        count=found.paginator.count,
        page=found.number,
        pages=found.paginator.num_pages,
        per_page=settings.ALIASES_PER_PAGE,
        items=[AliasOut.of(alias) for alias in found.object_list],
    )


@api.post("/aliases", response={201: AliasOut, **REFUSALS}, auth=MANAGE, url_name="alias_create")
def create_alias(request: HttpRequest, payload: AliasCreateIn) -> Status[AliasOut]:
    """A new alias: per site (`site`: a host name or address; `local_part` optional), random, or
    custom (`local_part`), on `domain` (empty: the default alias domain)."""
    alias = alias_calls.create(
        request,
        token_of(request).owner,
        payload.kind,
        site=payload.site,
        local_part=payload.local_part,
        domain=payload.domain,
        note=payload.note,
        expires_on=payload.expires_on,
        another=payload.another,
    )
    return Status(201, AliasOut.of(alias))


@api.get("/aliases/{int:alias_id}", response={200: AliasOut, 404: ErrorOut, **REFUSALS}, url_name="alias")
def read_alias(request: HttpRequest, alias_id: int) -> AliasOut:
    return AliasOut.of(get_own_alias(request, alias_id))


@api.patch(
    "/aliases/{int:alias_id}", response={200: AliasOut, 404: ErrorOut, **REFUSALS}, auth=MANAGE, url_name="alias_update"
)
def update_alias(request: HttpRequest, alias_id: int, payload: AliasUpdateIn) -> AliasOut:
    """Change the note, the expiry day (YYYY-MM-DD, "" for none) or vacation replies; fields
    left out stay as they are."""
    alias = get_own_alias(request, alias_id)
    alias_calls.update(
        request, alias, note=payload.note, expires_on=payload.expires_on, vacation_replies=payload.vacation_replies
    )
    return AliasOut.of(get_own_alias(request, alias_id))


@api.delete(
    "/aliases/{int:alias_id}", response={200: Deleted, 404: ErrorOut, **REFUSALS}, auth=MANAGE, url_name="alias_delete"
)
def remove_alias(request: HttpRequest, alias_id: int) -> Deleted:
    """Delete for good: the address is refused from now on and can never be made again."""
    alias = get_own_alias(request, alias_id)
    address = alias.address
    delete_alias(request, alias)
    return Deleted(deleted=address)


@api.post(
    "/aliases/{int:alias_id}/enable",
    response={200: AliasOut, 404: ErrorOut, **REFUSALS},
    auth=MANAGE,
    url_name="alias_enable",
)
def enable_alias(request: HttpRequest, alias_id: int) -> AliasOut:
    alias = get_own_alias(request, alias_id)
    set_alias_enabled(request, alias, True)
    return AliasOut.of(alias)


@api.post(
    "/aliases/{int:alias_id}/disable",
    response={200: AliasOut, 404: ErrorOut, **REFUSALS},
    auth=MANAGE,
    url_name="alias_disable",
)
def disable_alias(request: HttpRequest, alias_id: int) -> AliasOut:
    """Switch off: mail to the address is refused until it is switched on again."""
    alias = get_own_alias(request, alias_id)
    set_alias_enabled(request, alias, False)
    return AliasOut.of(alias)


@api.get("/suggestion", response={200: SuggestionOut, **REFUSALS}, url_name="suggestion")
def suggestion(request: HttpRequest, hostname: str) -> SuggestionOut:
    """The name a per-site alias for this host would get now (nothing is made)."""
    found = alias_calls.suggest(token_of(request).owner, hostname)
    address = f"{found.local_part}@{found.domain}" if found.local_part else ""
    return SuggestionOut(hostname=found.hostname, local_part=found.local_part, domain=found.domain, address=address)


@api.get("/domains", response={200: list[DomainOut], **REFUSALS}, url_name="domains")
def domains(request: HttpRequest) -> list[DomainOut]:
    """The domains you may make aliases on."""
    owner = token_of(request).owner
    default = alias_calls.default_domain(owner)
    return [
        DomainOut(
            name=domain.name,
            alias_domain=domain.is_alias_domain,
            personal_catchall=domain.catchall_owner_id == owner.pk,
            default=default is not None and domain.pk == default.pk,
        )
        for domain in usable_domains(owner)
    ]
