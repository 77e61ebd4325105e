"""What aliases and domains put in the Postfix tables (the postfix app calls this; see
postfix/features.py): alias and catch-all routes, refusals of switched-off and deleted
addresses, the domains, the directory's mailboxes, every alias of a suspended user, and who
may send as each mailbox and live alias (sender_login)."""

import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from datetime import datetime
from itertools import compress
from operator import itemgetter, not_

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import EmptyResultSet, ValidationError
from django.db import connection
from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Concat

from accounts import directory
from accounts.models import SenderSuspension
from accounts.suspension import reject_action
from aliases import addresses
from aliases.models import Alias, AliasTombstone, Domain, aliases_named
from postfix.features import Entries, Entry, Snapshot

logger = logging.getLogger(__name__)

REJECT_DISABLED = "550 5.1.1 This address is disabled"
REJECT_EXPIRED = "550 5.1.1 This address has expired"
REJECT_DELETED = "550 5.1.1 This address has been deleted"
_LOGIN = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")


# A render of at most this many keys (a keyed publication, explain) reads only the people it
# needs from the directory, not all of them: the change-to-live targets (a lone change in a
# directory of 5,000 people took 0.5-0.8 s, most of it reading every person).
FEW_KEYS = 100


def directory_mailboxes(keys: frozenset[str] | None = None) -> dict[str, str]:
    """uid -> mailbox address for every person in the directory (one paged search), or for the
    people that a render of these keys reads, when they are few."""
    if keys is None or len(keys) > FEW_KEYS:
        return mailboxes_of(directory.mail_entries())
    return relevant_mailboxes(keys)


def served_domains() -> set[str]:
    """Every domain whose mail the tables route: the mail and alias domains of the settings and
    every domain in the database (manage.py postfix_apply keeps them out of mydestination)."""
    return {settings.MAIL_DOMAIN, settings.ALIAS_DOMAIN, *Domain.objects.values_list("name", flat=True)}


def relevant_mailboxes(keys: Collection[str]) -> dict[str, str]:
    """uid -> mailbox of the people a render of these keys reads: the owners of aliases among
    them and of catch-alls (their mailbox is the target), the people whose mailbox is among them
    (a suspended one's is refused), and one person of each domain among them (whether it is a
    mailbox domain). The whole directory gives the same lines for these keys at a cost growing
    with the number of people (tests/test_publication.py and tests/test_explain.py compare)."""
    addresses = {key for key in keys if "@" in key and not key.startswith("@")}
    domains = {key.lstrip("@") for key in keys if "@" not in key or key.startswith("@")}
    by_domain: dict[str, list[str]] = defaultdict(list)
    for address in addresses:
        local, _, domain = address.rpartition("@")
        by_domain[domain].append(local)
    uids = set(Domain.objects.exclude(catchall_owner=None).values_list("catchall_owner__username", flat=True))
    for domain, locals_ in by_domain.items():
        uids.update(aliases_named(domain, locals_).values_list("owner__username", flat=True))
    return mailboxes_of(directory.mail_entries_of(uids, addresses, domains))


def mailboxes_of(entries: Iterable[directory.MailEntry]) -> dict[str, str]:
    """uid -> mailbox address of these entries. A `mail` value that is not a plain address (a
    slash, "..", whitespace, quotes, two @...) would turn into a path or a different line in a
    table: such an entry is left out, so its owner's aliases are refused as ownerless."""
    found = {}
    for entry in entries:
        try:
            mail = addresses.normalize_address(entry.mail)
        except ValidationError:
            logger.warning(
                "directory entry %s (uid %r): unsafe mail %r left out of the maps", entry.dn, entry.uid, entry.mail[:80]
            )
            continue
        if entry.uid:
            found[entry.uid] = mail
    return found


def mailboxes_fingerprint(mailboxes: dict[str, str]) -> str:
    """A digest of uid -> mailbox: equal digests, equal alias targets."""
    text = "".join(f"{uid} {mail}\n" for uid, mail in sorted(mailboxes.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def sender_logins(uid: str, mailbox: str) -> str:
    """The SASL logins that may send as an address of this person: the uid, and the mailbox
    address (Dovecot's example passdb makes the address the login: pass_attrs mail=user). A uid
    that is not one plain token (a comma or space would name a second login) gives the mailbox only."""
    return f"{uid}, {mailbox}" if _LOGIN.match(uid) else mailbox


# An alias's address, made by the database (a full render reads a million).
_ADDRESS = Concat("local_part", Value("@"), "domain__name")


def _columns(rows: "QuerySet[Alias, tuple[str, int]]") -> tuple[list[str], list[int]]:
    """The addresses and owner ids of these rows, read with a plain cursor (the ORM's iterator
    spends ~1 µs a row making each tuple: a second at a million)."""
    try:
        sql, params = rows.query.sql_with_params()
    except EmptyResultSet:  # a keyed render whose keys name no alias
        return [], []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    return list(map(itemgetter(0), found)), list(map(itemgetter(1), found))


def _aliases(keys: frozenset[str] | None) -> QuerySet[Alias]:
    rows = Alias.objects.order_by()
    if keys is None:
        return rows
    wanted: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        local, _, domain = key.rpartition("@")
        wanted[domain].add(local)
    # One indexed query per domain; their ids OR-ed as subqueries made SQLite scan every alias.
    ids = [
        pk for domain, locals_ in wanted.items() for pk in aliases_named(domain, locals_).values_list("pk", flat=True)
    ]
    return rows.filter(pk__in=ids)


class AliasMaps:
    def entries(self, snapshot: Snapshot) -> Iterator[Entry | Entries]:
        now, mailboxes, keys = snapshot.now, snapshot.mailboxes, snapshot.keys
        domains = list(
            Domain.objects.values_list(
                "pk", "name", "is_alias_domain", "catchall_destinations", "catchall_owner__username"
            )
        )
        names = {pk: name for pk, name, _, _, _ in domains}
        # Each owner's mailbox as the directory has it now (the user rows' email is a cache that
        # only a sign-in refreshes); an owner without one gets "" and their aliases are refused.
        uids = dict(User.objects.values_list("pk", "username"))
        owners = {pk: mailboxes.get(uid, "") for pk, uid in uids.items()}
        logins = {pk: sender_logins(uids[pk], mailbox) for pk, mailbox in owners.items() if mailbox}

        # Refusals, checked before delivery: deleted wins over disabled over expired.
        tombstones = AliasTombstone.objects.values_list("address", flat=True)
        for address in tombstones if keys is None else tombstones.filter(address__in=keys):
            yield Entry("recipient_access", address, REJECT_DELETED)
        aliases = _aliases(keys)
        live = Q(enabled=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        for address, enabled in aliases.exclude(live).values_list(_ADDRESS, "enabled").iterator(10000):
            yield Entry("recipient_access", address, REJECT_DISABLED if not enabled else REJECT_EXPIRED)
        # The live aliases, a row each (a million of them): as columns, with no object per alias.
        addresses, owner_ids = _columns(aliases.filter(live).values_list(_ADDRESS, "owner_id"))
        if not all(map(owners.get, set(owner_ids))):  # a few hundred owners, not a million rows
            # An owner without a mailbox: refused with the disabled text, so the reply names
            # no other address, it never reaches a catch-all, and nothing bounces later.
            owned = list(map(bool, map(owners.get, owner_ids)))
            orphans = list(compress(addresses, map(not_, owned)))
            yield Entries("recipient_access", orphans, [REJECT_DISABLED] * len(orphans))
            addresses, owner_ids = list(compress(addresses, owned)), list(compress(owner_ids, owned))
        yield Entries("virtual", addresses, list(map(owners.__getitem__, owner_ids)))
        yield Entries("sender_login", addresses, list(map(logins.__getitem__, owner_ids)))

        catchall_domains = set()
        for _, name, _, destinations, owner_uid in domains:
            targets = [d.strip().lower() for d in destinations.replace("\n", ",").split(",") if d.strip()]
            if owner_uid and mailboxes.get(owner_uid):
                targets.append(mailboxes[owner_uid])
            if targets:
                yield Entry("virtual", f"@{name}", ", ".join(targets), domain_wide=True)
                catchall_domains.add(name)
        alias_domains = {name for _, name, is_alias, _, _ in domains if is_alias}
        mailbox_domains = {name for _, name, is_alias, _, _ in domains if not is_alias}
        mailbox_domains.update(mailbox.rpartition("@")[2] for mailbox in mailboxes.values())
        mailbox_domains -= alias_domains  # a domain listed as both is refused by Postfix
        for uid, mailbox in mailboxes.items():
            yield Entry("sender_login", mailbox, sender_logins(uid, mailbox))
            local, _, domain = mailbox.rpartition("@")
            # virtual_alias_maps tries user@domain before @domain: a real mailbox in a
            # catch-all domain maps to itself so the catch-all never swallows it.
            if domain in catchall_domains:
                yield Entry("virtual", mailbox, mailbox)
            if domain in mailbox_domains:
                yield Entry("mailboxes", mailbox, f"{domain}/{local}/")
        yield from (Entry("mailbox_domains", name, "OK") for name in sorted(mailbox_domains))
        yield from (Entry("alias_domains", name, "OK") for name in sorted(alias_domains))

        # A suspended user may send as none of their aliases, enabled or not.
        suspended = SenderSuspension.objects.active().values("uid")
        action = reject_action()
        # Their ids first: a join on the username in a subquery had SQLite read every alias
        # (90 ms at 1,000,000, in every keyed render), where the owner index reads theirs only.
        owner_ids = list(User.objects.filter(username__in=suspended).values_list("pk", flat=True))
        rows = Alias.objects.order_by().filter(owner_id__in=owner_ids).values_list("local_part", "domain_id")
        for local, domain_id in rows:
            yield Entry("sender_access", f"{local}@{names[domain_id]}", action)

    def due_keys(self, since: datetime, now: datetime) -> set[str]:
        expired = Alias.objects.filter(enabled=True, expires_at__gt=since, expires_at__lte=now)
        return {f"{local}@{domain}" for local, domain in expired.values_list("local_part", "domain__name")}

    def next_due(self, now: datetime) -> datetime | None:
        upcoming = Alias.objects.filter(enabled=True, expires_at__gt=now).order_by("expires_at")
        return upcoming.values_list("expires_at", flat=True).first()


feature = AliasMaps()
