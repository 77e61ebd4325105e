"""Alias and domain workflows. Each change is one transaction holding the change, its audit
event and the request to publish the Postfix maps (a worker publishes after commit).

Checks that need the directory (is this address a mailbox?) run in the forms, before the
transaction: no LDAP round trip happens while the database is locked.
"""

import secrets
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts import directory
from accounts.suspension import is_suspended
from aliases.addresses import is_reserved, normalize_local_part
from aliases.models import Alias, AliasTombstone, Domain
from audit.models import AuditEvent, record_event
from mailadmin.dates import format_datetime
from postfix.publication import request_publication

TAKEN = "{address} is not available. Choose another name."
RANDOM_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud or typed from paper


class AliasRefused(Exception):
    """A change the rules do not allow; the message is meant for the person who asked."""


def get_own_alias(request: HttpRequest, pk: int) -> Alias:
    """The signed-in user's alias with this id; 404 for any other (including other users')."""
    return get_object_or_404(Alias.objects.select_related("domain"), pk=pk, owner_id=request.user.pk)


def usable_domains(user: User) -> QuerySet[Domain]:
    """Every alias domain, and the user's own personal catch-all domains."""
    return Domain.objects.filter(Q(is_alias_domain=True) | Q(catchall_owner_id=user.pk)).order_by("name")


def address_in_use(address: str) -> bool:
    """Taken in the database: an alias, a tombstone, or a catch-all destination (case-insensitive)."""
    known = _read_ahead_here()
    if known is not None and address.lower() in known.addresses:
        return address.lower() in known.in_use
    local_part, _, domain = address.lower().partition("@")
    if Alias.objects.filter(local_part=local_part, domain__name=domain).exists():
        return True
    if AliasTombstone.objects.filter(address=address.lower()).exists():
        return True
    return any(
        address.lower() in d.catchall_addresses
        for d in Domain.objects.filter(catchall_destinations__icontains=address).only("catchall_destinations")
    )


def free_local_parts(candidates: list[str], domain: Domain) -> list[str]:
    """The candidates no alias, tombstone or catch-all destination on this domain holds, and not
    reserved, in order (three queries however many candidates): address_in_use for each."""
    # Local parts are stored lower-case (normalize_local_part).
    taken = {a.rsplit("@", 1)[0] for a in _in_use({f"{c.lower()}@{domain.name}" for c in candidates})}
    return [c for c in candidates if c.lower() not in taken and not is_reserved(c)]


def _in_use(wanted: set[str]) -> set[str]:
    """Those of these (lower-case) addresses an alias, a tombstone or a catch-all destination
    holds, in three queries however many: address_in_use for each."""
    parts = [address.rpartition("@")[::2] for address in wanted]
    in_use = {
        f"{local_part}@{domain}"
        for local_part, domain in Alias.objects.filter(
            domain__name__in={domain for _, domain in parts}, local_part__in={local for local, _ in parts}
        ).values_list("local_part", "domain__name")
    } & wanted
    in_use |= set(AliasTombstone.objects.filter(address__in=wanted).values_list("address", flat=True))
    for catchall in Domain.objects.exclude(catchall_destinations="").only("catchall_destinations"):
        in_use |= wanted & {address.lower() for address in catchall.catchall_addresses}
    return in_use


def random_local_part() -> str:
    return "".join(secrets.choice(RANDOM_ALPHABET) for _ in range(12))


def creation_refusal(owner: User, now: datetime | None = None) -> str | None:
    """Why this user may not create another alias now, or None."""
    now = now or timezone.now()
    if is_suspended(owner):
        return _refusal(suspended=True, aliases=0, recent=0)
    aliases = Alias.objects.filter(owner=owner).count()
    if aliases >= settings.ALIAS_LIMIT_PER_USER:
        return _refusal(suspended=False, aliases=aliases, recent=0)
    recent = _creations_since(now).filter(actor_name=owner.get_username()).count()
    return _refusal(suspended=False, aliases=aliases, recent=recent)


def _refusal(*, suspended: bool, aliases: int, recent: int) -> str | None:
    if suspended:
        # New addresses would be new ways to send and receive for a barred sender.
        return f"Your account is suspended, so you cannot make new aliases. Contact {settings.ABUSE_CONTACT}."
    limit = settings.ALIAS_LIMIT_PER_USER
    if aliases >= limit:
        return f"You have reached the limit of {limit} aliases. Delete some you no longer use to make new ones."
    if recent >= settings.ALIAS_CREATION_RATE:
        minutes = max(1, settings.ALIAS_CREATION_WINDOW // 60)
        return f"You have made {recent} aliases in the last {minutes} minutes, the most allowed. Try again later."
    return None


def _creations_since(now: datetime) -> QuerySet[AuditEvent]:
    """Aliases people made themselves within ALIAS_CREATION_WINDOW (what the creation rate counts)."""
    return AuditEvent.objects.filter(
        action="alias.create", created_at__gte=now - timedelta(seconds=settings.ALIAS_CREATION_WINDOW)
    )


@dataclass(frozen=True)
class _ReadAhead:
    addresses: frozenset[str]  # asked, lower-case
    in_use: frozenset[str]
    depth: int  # of transactions when it was read


# Set by checks_read_ahead(): what address_in_use() answers.
_read_ahead: ContextVar[_ReadAhead | None] = ContextVar("alias_checks_read_ahead", default=None)


def _transaction_depth() -> int:
    return len(transaction.get_connection().atomic_blocks)


def _read_ahead_here() -> _ReadAhead | None:
    # In a transaction opened since (the services' own checks, under the owner's lock): the database.
    known = _read_ahead.get()
    return known if known is not None and known.depth == _transaction_depth() else None


@contextmanager
def checks_read_ahead(addresses: Collection[str]) -> Iterator[None]:
    """Inside, address_in_use() of these addresses answers from the three queries of _in_use()
    made on entering, instead of three each: a CSV import checks a batch of rows with the alias
    forms this way. Within a transaction opened inside it, it asks the database: create_alias()
    checks again in its own (with the limits), so a change made meanwhile is still refused."""
    wanted = {address.lower() for address in addresses}
    in_use = _in_use(wanted)
    token = _read_ahead.set(_ReadAhead(frozenset(wanted), frozenset(in_use), _transaction_depth()))
    try:
        yield
    finally:
        _read_ahead.reset(token)


def create_alias(
    request: HttpRequest | None,
    owner: User,
    *,
    local_part: str,
    domain: Domain,
    kind: str,
    site: str = "",
    label: str = "",
    expires_at: datetime | None = None,
    actor: User | None = None,
) -> Alias:
    """A new alias, or AliasRefused. The caller's form has checked the input and the directory
    (aliases.forms: the name is nobody's mailbox, nor a colleague's name), outside any
    transaction; this refuses a name that is no valid local part whoever calls, and checks what
    another request may change meanwhile (the limits, the address taken) under the owner's lock.
    `actor`: who made it when not the owner (an admin's CSV import; no request in the worker)."""
    try:
        valid = normalize_local_part(local_part, allow_reserved=True) == local_part
    except ValidationError as exc:
        raise AliasRefused(exc.messages[0]) from None
    if not valid:
        raise AliasRefused("Use only lower-case letters a–z, digits, and dots, hyphens or underscores between them.")
    address = f"{local_part}@{domain.name}"
    with transaction.atomic():
        # One creation per owner at a time, so concurrent requests cannot all see room under the limit.
        # (SQLite has no row locks: its transactions take the one write lock at BEGIN IMMEDIATE.)
        if connection.features.has_select_for_update:
            User.objects.select_for_update().filter(pk=owner.pk).first()
        refusal = creation_refusal(owner)
        if refusal:
            raise AliasRefused(refusal)
        # Checked again inside the transaction: another request may have taken it meanwhile.
        if address_in_use(address):
            raise AliasRefused(TAKEN.format(address=address))
        try:
            alias = Alias.objects.create(
                owner=owner,
                local_part=local_part,
                domain=domain,
                kind=kind,
                site=site,
                label=label,
                expires_at=expires_at,
            )
        except IntegrityError:
            # Raised inside the atomic block: the whole creation is rolled back.
            raise AliasRefused(TAKEN.format(address=address)) from None
        if actor is None or actor.pk == owner.pk:
            record_event("alias.create", request=request, actor=owner, target=address, detail=_describe(alias))
        else:
            # Not "alias.create": that counts against the actor's own creation rate.
            detail = f"for {owner.get_username()}, {_describe(alias)}"
            record_event("alias.create-for", request=request, actor=actor, target=address, detail=detail)
        request_publication(f"alias created: {address}", keys=[address])
    return alias


def _describe(alias: Alias) -> str:
    parts = [f"kind {alias.kind}"]
    if alias.site:
        parts.append(f"site {alias.site}")
    if alias.expires_at:
        parts.append(f"expires {format_datetime(alias.expires_at, zone=True)}")
    return ", ".join(parts)


def set_alias_enabled(request: HttpRequest | None, alias: Alias, enabled: bool, actor: User | None = None) -> None:
    set_aliases_enabled(request, [alias], enabled, actor)


def _publication_reason(aliases: list[Alias], verb: str) -> str:
    return f"alias {verb}: {aliases[0].address}" if len(aliases) == 1 else f"{len(aliases)} aliases {verb}"


def set_aliases_enabled(
    request: HttpRequest | None, aliases: list[Alias], enabled: bool, actor: User | None = None
) -> list[Alias]:
    """Switch several of one owner's aliases on or off in one transaction; returns those changed.
    `actor`: who did it when there is no request (the worker running an admin's import)."""
    changed = [alias for alias in aliases if alias.enabled != enabled]
    if not changed:
        return []
    with transaction.atomic():
        now = timezone.now()
        Alias.objects.filter(pk__in=[a.pk for a in changed]).update(enabled=enabled, updated_at=now)
        for alias in changed:
            alias.enabled, alias.updated_at = enabled, now
            record_event(
                "alias.enable" if enabled else "alias.disable", request=request, actor=actor, target=alias.address
            )
        reason = _publication_reason(changed, "enabled" if enabled else "disabled")
        request_publication(reason, keys=[alias.address for alias in changed])
    return changed


def delete_aliases(request: HttpRequest, aliases: list[Alias]) -> None:
    """Delete several aliases at once: each is refused from now on and never created again."""
    if not aliases:
        return
    with transaction.atomic():
        for alias in aliases:
            address = alias.address.lower()
            AliasTombstone.objects.get_or_create(address=address, defaults={"former_owner_id": alias.owner_id})
            record_event("alias.delete", request=request, target=address)
        Alias.objects.filter(pk__in=[a.pk for a in aliases]).delete()
        request_publication(_publication_reason(aliases, "deleted"), keys=[alias.address for alias in aliases])


def update_alias(
    request: HttpRequest, alias: Alias, *, label: str, expires_at: datetime | None, vacation_replies: bool
) -> None:
    changed = [
        name
        for name, value in (("label", label), ("expires_at", expires_at), ("vacation_replies", vacation_replies))
        if getattr(alias, name) != value
    ]
    if not changed:
        return
    with transaction.atomic():
        alias.label, alias.expires_at, alias.vacation_replies = label, expires_at, vacation_replies
        alias.save(update_fields=[*changed, "updated_at"])
        record_event("alias.update", request=request, target=alias.address, detail="changed " + ", ".join(changed))
        # The label changes no map; expiry and vacation replies do.
        if changed != ["label"]:
            request_publication(f"alias changed: {alias.address}", keys=[alias.address])


def delete_alias(request: HttpRequest, alias: Alias) -> None:
    """The address is refused from now on and can never be created again."""
    delete_aliases(request, [alias])


def save_domain(request: HttpRequest, domain: Domain, *, catchall_owner: tuple[str, str], created: bool) -> None:
    """Store a domain validated by DomainForm; catchall_owner is (uid, mail) as read from the
    directory, or ("", "") for none."""
    uid, mail = catchall_owner
    with transaction.atomic():
        owner = None
        if uid:
            # A user who never signed in has no row yet; the maps need their address now.
            owner, _ = User.objects.get_or_create(username=uid, defaults={"email": mail})
            if owner.email != mail:
                owner.email = mail
                owner.save(update_fields=["email"])
        domain.catchall_owner = owner
        domain.save()
        detail = "alias domain" if domain.is_alias_domain else "mailbox domain"
        if domain.catchall_destinations:
            detail += f"; catch-all to {domain.catchall_destinations}"
        if uid:
            detail += f"; personal catch-all of {uid}"
        action = "domain.create" if created else "domain.update"
        record_event(action, request=request, target=domain.name, detail=detail)
        request_publication(f"domain {'created' if created else 'changed'}: {domain.name}")


def domain_uses(domain: Domain) -> list[str]:
    """Why this domain cannot be deleted now (empty: nothing uses it). Reads the directory, so
    it runs before delete_domain's transaction."""
    uses = []
    if domain.name == settings.MAIL_DOMAIN.lower():
        uses.append("it is the organisation's mail domain (MAILADMIN_MAIL_DOMAIN)")
    count = Alias.objects.filter(domain=domain).count()
    if count:
        uses.append(f"{count} alias{'es' if count != 1 else ''} use it (switched off ones included)")
    if domain.catchall_owner_id:
        uses.append("it is a personal catch-all domain")
    if domain.catchall_destinations:
        uses.append("it has a catch-all")
    mailbox = directory.mailbox_in_domain(domain.name)
    if mailbox:
        uses.append(f"the directory has mailboxes in it ({mailbox}, maybe more)")
    return uses


def delete_domain(request: HttpRequest, domain: Domain) -> None:
    """Remove a domain nothing uses (domain_uses said so). Postfix stops accepting mail for it at
    the next publication. Tombstones of its deleted addresses stay: were the domain added again,
    they would still be refused."""
    with transaction.atomic():
        # An alias made since domain_uses looked keeps the domain (and the alias) alive.
        if Alias.objects.select_for_update().filter(domain=domain).exists():
            raise AliasRefused(f"{domain.name} has aliases now; it was not deleted.")
        name = domain.name
        domain.delete()
        record_event("domain.delete", request=request, target=name)
        request_publication(f"domain deleted: {name}")
