"""The staff user list: the directory's page of people (accounts.directory.list_users) joined
with what this app records about them (aliases, last sign-in, vacation replies in force).

Nothing about a person is cached here: roles, the block flag and passwords are read from the
directory for every page; the database adds only facts the directory does not hold.
"""

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.db.models import Count, Q
from django.utils import timezone

from accounts import directory
from aliases.models import Alias
from outofoffice.models import VacationReply

# The badge each state wears in lists (templates/accounts/directory_list.html).
STATE_BADGES = {
    directory.UserState.ACTIVE: "badge-ok",
    directory.UserState.SUSPENDED: "badge-danger",
    directory.UserState.DISABLED: "badge-off",
    directory.UserState.AWAY: "badge-warn",
}


@dataclass(frozen=True)
class PersonRow:
    person: directory.DirectoryUser
    role: directory.UserRole
    state: directory.UserState
    aliases: int
    last_sign_in: datetime | None

    @property
    def state_badge(self) -> str:
        return STATE_BADGES[self.state]


@dataclass(frozen=True)
class PeoplePage:
    rows: list[PersonRow]
    total: int
    offset: int


def away_now(now: datetime | None = None) -> frozenset[str]:
    """uids whose vacation reply is on and in its window now (what the responder decides)."""
    now = now or timezone.now()
    in_force = (
        VacationReply.objects.filter(enabled=True)
        .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=now))
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
    )
    return frozenset(in_force.values_list("uid", flat=True))


def _role(uid: str, listing: directory.UserListing) -> directory.UserRole:
    if uid in listing.admins:
        return directory.UserRole.ADMIN
    if uid in listing.helpdesk:
        return directory.UserRole.HELPDESK
    return directory.UserRole.END_USER


def _state(
    person: directory.DirectoryUser, listing: directory.UserListing, away: frozenset[str]
) -> directory.UserState:
    if person.uid in listing.disabled:
        return directory.UserState.DISABLED
    if person.sender_blocked:
        return directory.UserState.SUSPENDED
    if person.uid in away:
        return directory.UserState.AWAY
    return directory.UserState.ACTIVE


def people_page(
    query: str,
    *,
    role: directory.UserRole | None,
    state: directory.UserState | None,
    sort: directory.UserSort,
    descending: bool,
    offset: int,
    limit: int,
) -> PeoplePage:
    """One page of the user list; three directory searches on one connection and three
    queries (people away now, alias counts and last sign-ins of the page's people)."""
    away = away_now()
    listing = directory.list_users(
        query, role=role, state=state, away=away, sort=sort, descending=descending, offset=offset, limit=limit
    )
    uids = [person.uid for person in listing.users]
    alias_counts = dict(
        Alias.objects.filter(owner__username__in=uids).values_list("owner__username").annotate(n=Count("id"))
    )
    last_sign_in = dict(User.objects.filter(username__in=uids).values_list("username", "last_login"))
    rows = [
        PersonRow(
            person=person,
            role=_role(person.uid, listing),
            state=_state(person, listing, away),
            aliases=alias_counts.get(person.uid, 0),
            last_sign_in=last_sign_in.get(person.uid),
        )
        for person in listing.users
    ]
    return PeoplePage(rows=rows, total=listing.total, offset=listing.offset)
