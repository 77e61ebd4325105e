"""Gathering what explain/decision.py decides on: the live tables through the postmap boundary,
the same keys rendered from the database as the publisher would, the directory's sender-block
flag, the policy service's blocks and this host's publication state. Who may explain what."""

from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Q
from django.utils import timezone

from accounts import directory
from accounts.models import SenderSuspension
from accounts.sender_block import sender_block_cf_lines
from activity.models import SenderBlock
from aliases.models import AliasTombstone, aliases_named
from aliases.postfix_feature import relevant_mailboxes
from explain import decision
from explain.decision import Block, Difference, Key, PublicationState, Routing, Tables, Verdict
from outofoffice import handoff
from policy.decision import block_keys
from postfix import features, postmap
from postfix.models import MapGeneration, MapPublication
from postfix.publication import render_tables

# Rounds of look-ups following virtual targets (an alias -> a mailbox -> its vacation copy).
MAX_ROUNDS = 4
# Blocks shown per direction; the policy service applies all of them.
MAX_BLOCKS = 20


class ExplainError(Exception):
    """A live table could not be read; the message says which and why."""


@dataclass(frozen=True)
class Explanation:
    address: str
    host: str
    to: Verdict
    sender: Verdict
    differences: list[Difference]
    note: str | None


def is_own(user: User, address: str) -> bool:
    """The person's mailbox (as the directory has it now) or one of their aliases, also
    switched-off and deleted ones. Raises directory.DirectoryUnavailable."""
    local, _, domain = address.rpartition("@")
    if aliases_named(domain, [local]).filter(owner=user).exists():
        return True
    if AliasTombstone.objects.filter(former_owner=user, address=address).exists():
        return True
    entry = directory.get_user(user.get_username())
    return entry is not None and entry.mail == address


def _query(keys: set[Key]) -> Tables:
    by_table: dict[str, list[str]] = defaultdict(list)
    for table, key in sorted(keys):
        by_table[table].append(key)
    # A table never published answers nothing: every key is missing.
    tables = {name: postmap.live(name) for name in by_table}
    requests = {table: by_table[name] for name, table in tables.items() if table.exists()}
    try:
        answers = postmap.query_tables(requests)
    except postmap.PostmapError as exc:
        raise ExplainError(f"The live tables could not be read: {exc}") from exc
    values = {
        (name, key): value
        for name, table in tables.items()
        if table in answers
        for key, value in answers[table].found.items()
    }
    return Tables(values, frozenset(keys))


def live_tables(address: str) -> Tables:
    """Every key Postfix would look up for mail to and from the address, following virtual
    targets, as the live tables answer."""
    tables = Tables()
    for _ in range(MAX_ROUNDS):
        wanted = {key for key in decision.further_keys(address, tables) if key[0] in settings.POSTFIX_MAPS}
        if not wanted:
            break
        more = _query(wanted)
        tables = Tables({**tables.values, **more.values}, tables.asked | more.asked)
    return tables


def expected_tables(asked: frozenset[Key]) -> Tables:
    """The same keys rendered from the database and the directory now, as a publication would."""
    keys = frozenset(key for _, key in asked)
    rendered = render_tables(features.Snapshot(timezone.now(), relevant_mailboxes(keys), keys))
    values: dict[Key, str] = {}
    for table, lines in rendered.items():
        for line in lines:
            key, _, value = line.partition(" ")
            if (table, key) in asked:
                values[(table, key)] = value
    return Tables(values, asked)


def routing() -> Routing:
    return Routing(handoff.handoff_domain(settings.VACATION_ROUTING_DOMAIN), settings.VACATION_ROUTING_DOMAIN)


def _visible(blocks: "Q", viewer: User | None) -> "Q":
    """An end user sees organisation-wide blocks and their own; staff see every block."""
    return blocks if viewer is None else blocks & (Q(scope=SenderBlock.Scope.ORGANISATION) | Q(owner=viewer))


def _block(row: SenderBlock) -> Block:
    key = f"@{row.sender}" if row.is_domain else row.sender
    if row.scope == SenderBlock.Scope.ALIAS and row.alias is not None:
        return Block(row.scope, key, row.alias.address)
    return Block(row.scope, key, row.owner.get_username() if row.owner else "")


def blocks_from(address: str, viewer: User | None) -> list[Block]:
    """Blocks of mail from this address (as a sender): its address, its domain or a parent."""
    keys = block_keys(address)
    domains = [key[1:] for key in keys if key.startswith("@")]
    matching = Q(is_domain=False, sender=address) | Q(is_domain=True, sender__in=domains)
    rows = SenderBlock.objects.filter(_visible(matching, viewer)).select_related("owner", "alias__domain")
    order: list[str] = [SenderBlock.Scope.ORGANISATION, SenderBlock.Scope.ACCOUNT, SenderBlock.Scope.ALIAS]
    return sorted((_block(row) for row in rows[:MAX_BLOCKS]), key=lambda block: order.index(block.scope))


def blocks_to(address: str, mailbox_owner: str | None, viewer: User | None) -> list[Block]:
    """Blocks held by the recipient: its owner's account-wide ones and the alias's own."""
    local, _, domain = address.rpartition("@")
    # Not first(): its ORDER BY pk would have SQLite walk the table in rowid order.
    alias = next(iter(aliases_named(domain, [local]).values_list("pk", "owner_id")[:1]), None)
    owners = Q(owner__username=mailbox_owner) if mailbox_owner else Q(pk__in=[])
    own_alias = Q(pk__in=[])
    if alias is not None:
        owners |= Q(owner_id=alias[1])
        own_alias = Q(scope=SenderBlock.Scope.ALIAS, alias_id=alias[0])
    applying = (owners & Q(scope=SenderBlock.Scope.ACCOUNT)) | own_alias
    rows = SenderBlock.objects.filter(_visible(applying, viewer)).select_related("owner", "alias__domain")
    return [_block(row) for row in rows[:MAX_BLOCKS]]


def publication_state() -> PublicationState:
    requested = MapGeneration.objects.filter(pk=1).values_list("requested", "requested_at").first() or (0, None)
    state = MapPublication.objects.filter(host=settings.MAIL_HOST).first()
    if state is None:
        return PublicationState(requested[0], requested[1], 0, None, "", None)
    return PublicationState(
        requested[0],
        requested[1],
        state.published_generation,
        state.last_success_at,
        state.last_error,
        state.last_error_at,
    )


def _ldap_line() -> str:
    query = next(line for line in sender_block_cf_lines() if line.startswith("query_filter"))
    return f"{settings.POSTFIX_CONFIG_DIR / 'sender_block.cf'}: {query}"


def explain(address: str, viewer: User | None = None) -> Explanation:
    """What happens now to mail to and from the address on this mail host. viewer None: staff
    (every block shown); else the end user whose own address it is. Raises ExplainError and
    directory.DirectoryUnavailable."""
    live = live_tables(address)
    expected = expected_tables(live.asked)
    person = directory.find_user_by_mail(address)
    flag = person.sender_blocked if person is not None else None
    suspended = SenderSuspension.objects.active().filter(uid=person.uid).exists() if person is not None else None
    to = decision.mail_to(address, live, routing(), blocks_to(address, person.uid if person else None, viewer))
    sender = decision.mail_from(
        address, live, flag, _ldap_line(), settings.SUSPENSION_REJECT_TEXT, blocks_from(address, viewer)
    )
    found = decision.differences(live, expected)
    flag_differs = decision.flag_difference(address, flag, suspended)
    if flag_differs is not None:
        found.append(flag_differs)
    return Explanation(
        address, settings.MAIL_HOST, to, sender, found, decision.publication_note(found, publication_state())
    )
