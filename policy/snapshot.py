"""Reading what the decision needs from the database and the directory into plain dictionaries."""

from collections import defaultdict

from django.contrib.auth.models import User

from accounts import directory
from activity.leaks import site_domain
from activity.models import BlockGeneration, LeakFlag, SenderBlock
from aliases.models import Alias, MapGeneration
from policy.decision import Recipient


def generations() -> tuple[int, int]:
    """(alias changes, block changes): two one-row reads, polled to know when to reload."""
    aliases = MapGeneration.objects.values_list("requested", flat=True).first() or 0
    blocks = BlockGeneration.objects.values_list("changes", flat=True).first() or 0
    return aliases, blocks


def alias_recipients() -> dict[str, Recipient]:
    sites: dict[str, str | None] = {}
    found: dict[str, Recipient] = {}
    rows = Alias.objects.values_list("local_part", "domain__name", "id", "owner_id", "kind", "site")
    for local_part, domain, alias_id, owner_id, kind, site in rows.iterator(chunk_size=5000):
        registrable = None
        if kind == Alias.Kind.PER_SITE and site:
            if site not in sites:
                sites[site] = site_domain(site)
            registrable = sites[site]
        found[f"{local_part}@{domain}".lower()] = Recipient(owner_id, alias_id, registrable)
    return found


def mailbox_recipients() -> dict[str, Recipient]:
    """Mailbox address (from the directory) -> its owner, for people who have signed in here
    (only they can have account-wide blocks). Raises directory.DirectoryError."""
    entries = directory.mail_entries()
    users = dict(User.objects.values_list("username", "id").iterator(chunk_size=5000))
    return {entry.mail: Recipient(users[entry.uid]) for entry in entries if entry.mail and entry.uid in users}


def blocks() -> tuple[dict[str, int], dict[int, dict[str, int]], dict[int, dict[str, int]]]:
    """(organisation, per owner, per alias) blocks, each "address" or "@domain" -> block id."""
    organisation: dict[str, int] = {}
    accounts: dict[int, dict[str, int]] = defaultdict(dict)
    aliases: dict[int, dict[str, int]] = defaultdict(dict)
    rows = SenderBlock.objects.values_list("id", "scope", "owner_id", "alias_id", "sender", "is_domain")
    for block_id, scope, owner_id, alias_id, sender, is_domain in rows.iterator(chunk_size=5000):
        key = f"@{sender}" if is_domain else sender
        if scope == SenderBlock.Scope.ORGANISATION:
            organisation[key] = block_id
        elif scope == SenderBlock.Scope.ACCOUNT and owner_id is not None:
            accounts[owner_id][key] = block_id
        elif scope == SenderBlock.Scope.ALIAS and alias_id is not None:
            aliases[alias_id][key] = block_id
    return organisation, dict(accounts), dict(aliases)


def flagged() -> frozenset[tuple[int, str]]:
    return frozenset(LeakFlag.objects.values_list("alias_id", "registrable_domain").iterator(chunk_size=5000))
