from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from email.utils import parseaddr
from typing import Any, ClassVar
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from accounts import directory
from accounts.forms import UNAVAILABLE
from aliases.activity_columns import ACTIVITY_OLD_SORTS, ACTIVITY_SORTS, ACTIVITY_STATES
from aliases.addresses import (
    MAX_LOCAL_PART,
    normalize_address,
    normalize_address_list,
    normalize_domain,
    normalize_local_part,
    propose_local_part,
    site_name,
)
from aliases.models import Alias, Domain
from aliases.services import address_in_use, free_local_parts, random_local_part, usable_domains
from mailadmin import dates

MAX_CATCHALL_DESTINATIONS = 20


def _refuse_control_characters(value: str) -> None:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError("Control characters and line breaks are not allowed.")


def _start_of_day(day: date) -> datetime:
    # "Stops working on <day>": from the start of that day in the site's time zone.
    return timezone.make_aware(datetime.combine(day, time.min))


def check_available(address: str, person: str | None = None) -> None:
    """Not an alias, tombstone, catch-all destination or mailbox (LDAP `mail`). With `person`
    (a uid), also not the name of anybody else in the directory: on a shared alias domain,
    alice@alias.example.org taken by bob would pass for Alice's."""
    if address_in_use(address):
        raise ValidationError(f"{address} is not available. Choose another name.", code="taken")
    check_directory(address, person)


def check_directory(address: str, person: str | None = None) -> None:
    """check_available's directory part alone, for a name free_local_parts found free in the
    database."""
    local_part = address.rpartition("@")[0]
    try:
        if person is None:  # nobody's name is guarded (an admin; one's own catch-all domain)
            taken, others = directory.mail_exists(address), frozenset[str]()
        else:
            claims = directory.address_claims(address)
            taken, others = claims.mailbox, claims.named - {person}
    except directory.DirectoryUnavailable:
        raise ValidationError(UNAVAILABLE, code="unavailable") from None
    if taken:
        raise ValidationError(f"{address} is not available. Choose another name.", code="taken")
    if others:
        raise ValidationError(
            f"“{local_part}” is the name of someone in the directory; only the mail administrators "
            "can give it out. Choose another name.",
            code="person",
        )


class AliasCreateForm(forms.Form):
    """What every kind of new alias asks for; subclasses add how the name is chosen."""

    kind = Alias.Kind.CUSTOM

    # Optional: posting a site alone uses the default alias domain.
    domain = forms.ModelChoiceField(queryset=Domain.objects.none(), empty_label=None, label="Domain", required=False)
    label = forms.CharField(
        label="Note (optional)",
        max_length=100,
        required=False,
        validators=[_refuse_control_characters],
        help_text="For you, to recognise the address later.",
    )
    expires_on = dates.DateField(
        label="Stops working on (optional)",
        required=False,
        help_text="From this day on, mail to the address is refused.",
    )

    def __init__(self, owner: User, *args: Any, is_admin: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner
        self.is_admin = is_admin
        domains = usable_domains(owner)
        field = self.fields["domain"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = domains
        alias_domains = [d for d in domains if d.is_alias_domain]
        self.default_domain = next((d for d in alias_domains if d.name == settings.ALIAS_DOMAIN), None) or next(
            iter(alias_domains), None
        )
        if self.default_domain is not None:
            field.initial = self.default_domain.pk
        self.chosen_local_part = ""

    def person_guarded(self, domain: Domain) -> str | None:
        """Whose colleagues' names are kept off this domain: everyone's but an admin's, except
        on the user's own catch-all domain."""
        if self.is_admin or domain.catchall_owner_id == self.owner.pk:
            return None
        return self.owner.get_username()

    @property
    def expires_at(self) -> datetime | None:
        day = self.cleaned_data.get("expires_on")
        return _start_of_day(day) if day else None

    def clean_expires_on(self) -> date | None:
        day: date | None = self.cleaned_data.get("expires_on")
        if day is not None and day <= timezone.localdate():
            raise ValidationError("Choose a day after today.")
        return day

    def clean(self) -> dict[str, Any]:
        # The limits (suspension, count, rate) are aliases.services.create_alias's to check: under
        # the owner's lock, once, with the same message.
        cleaned = super().clean() or {}
        domain = cleaned.get("domain") or self.default_domain
        if domain is None and "domain" not in self.errors:
            raise ValidationError("There is no alias domain yet. Ask the mail administrators to add one.")
        cleaned["domain"] = domain
        if domain is not None and not self.errors:
            self.choose_local_part(cleaned, domain)
        return cleaned

    def choose_local_part(self, cleaned: dict[str, Any], domain: Domain) -> None:
        raise NotImplementedError

    @property
    def remembered_site(self) -> str:
        return str(self.cleaned_data.get("site", ""))


class CustomAliasForm(AliasCreateForm):
    kind = Alias.Kind.CUSTOM
    field_order = ["local_part", "domain", "label", "expires_on"]

    local_part = forms.CharField(
        label="Name (before the @)",
        max_length=MAX_LOCAL_PART,
        strip=False,
        help_text="Letters, digits, and dots, hyphens or underscores between them.",
    )

    def clean_local_part(self) -> str:
        return normalize_local_part(self.cleaned_data["local_part"], allow_reserved=self.is_admin)

    def choose_local_part(self, cleaned: dict[str, Any], domain: Domain) -> None:
        self.chosen_local_part = cleaned["local_part"]
        try:
            check_available(f"{self.chosen_local_part}@{domain.name}", self.person_guarded(domain))
        except ValidationError as exc:
            self.add_error("local_part", exc)


class RandomAliasForm(AliasCreateForm):
    kind = Alias.Kind.RANDOM

    def choose_local_part(self, cleaned: dict[str, Any], domain: Domain) -> None:
        for _ in range(5):
            candidate = random_local_part()
            if free_local_parts([candidate], domain):
                try:
                    check_directory(f"{candidate}@{domain.name}")
                except ValidationError as exc:
                    if exc.code == "unavailable":
                        raise
                    continue
                self.chosen_local_part = candidate
                return
        raise ValidationError("No free random name was found. Please try again.")


class SiteAliasForm(AliasCreateForm):
    kind = Alias.Kind.PER_SITE
    field_order = ["site", "local_part", "domain", "label", "expires_on"]

    site = forms.CharField(
        label="Site",
        max_length=255,
        help_text="Paste the site's address (https://www.example.com/signup) or type its host name (example.com).",
    )
    local_part = forms.CharField(
        label="Name (before the @)",
        max_length=MAX_LOCAL_PART,
        strip=False,
        required=False,
        help_text="Leave empty to use the name made from the site.",
    )

    # Posted as 1 by "Make another one anyway" once the form said the site already has one.
    another = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["site"].widget.attrs.update(autocomplete="off", inputmode="url")
        self.existing: Alias | None = None

    def clean_site(self) -> str:
        name = site_name(self.cleaned_data["site"])
        # Cleaned here already: "another" comes after "site" in the form.
        if self.fields["another"].to_python(self["another"].data):
            return name  # a fresh one whatever the site has (password managers always ask so)
        self.existing = (
            Alias.objects.filter(owner=self.owner, site=name).select_related("domain").order_by("-created_at").first()
        )
        if self.existing is not None:
            raise ValidationError(
                f"You already have {self.existing.address} for {name}. Use it, or make another one anyway.",
                code="site-taken",
            )
        return name

    def clean_local_part(self) -> str:
        value: str = self.cleaned_data.get("local_part", "")
        return normalize_local_part(value, allow_reserved=self.is_admin) if value else ""

    def choose_local_part(self, cleaned: dict[str, Any], domain: Domain) -> None:
        if cleaned.get("local_part"):
            self.chosen_local_part = cleaned["local_part"]
            try:
                check_available(f"{self.chosen_local_part}@{domain.name}", self.person_guarded(domain))
            except ValidationError as exc:
                self.add_error("local_part", exc)
            return
        proposal = proposal_for(cleaned["site"], domain, self.person_guarded(domain))
        if not proposal:
            self.add_error("local_part", "No name could be made from this site. Enter one here.")
            return
        self.chosen_local_part = proposal


class QuickSiteForm(forms.Form):
    """The site field alone, as the alias list offers it (posted to SiteAliasForm's page)."""

    site = SiteAliasForm.base_fields["site"]


def proposal_for(site: str, domain: Domain, person: str | None = None) -> str:
    """The first free name made from the site: twittercom, then twittercom2, twittercom3, ..."""
    base = propose_local_part(site)
    if not base:
        return ""
    candidates = [base] + [f"{base}{n}" for n in range(2, 21)]
    for candidate in free_local_parts(candidates, domain):
        try:
            check_directory(f"{candidate}@{domain.name}", person)
        except ValidationError as exc:
            if exc.code == "unavailable":
                raise
            continue
        return candidate
    return ""


class AliasEditForm(forms.Form):
    label = forms.CharField(label="Note", max_length=100, required=False, validators=[_refuse_control_characters])
    expires_on = dates.DateField(
        label="Stops working on",
        required=False,
        help_text="Leave empty to keep the address. From this day on, mail to it is refused.",
    )
    vacation_replies = forms.BooleanField(
        label="Send my vacation reply to mail that arrives through this address",
        required=False,
        help_text="Off by default: a vacation reply to a disposable address tells the sender your real name.",
    )

    def __init__(self, alias: Alias, data: Any = None) -> None:
        initial = {
            "label": alias.label,
            "expires_on": timezone.localtime(alias.expires_at).date() if alias.expires_at else None,
            "vacation_replies": alias.vacation_replies,
        }
        super().__init__(data, initial=initial)
        self.alias = alias

    def clean_expires_on(self) -> date | None:
        day: date | None = self.cleaned_data.get("expires_on")
        if day is not None and day != self.initial["expires_on"] and day <= timezone.localdate():
            raise ValidationError("Choose a day after today.")
        return day

    @property
    def expires_at(self) -> datetime | None:
        day = self.cleaned_data.get("expires_on")
        if day is not None and day == self.initial["expires_on"]:
            return self.alias.expires_at  # unchanged: keep the exact stored moment
        return _start_of_day(day) if day else None


@dataclass(frozen=True)
class AliasState:
    label: str
    matches: Callable[[datetime], Q]  # the aliases in this state at a moment


@dataclass(frozen=True)
class AliasSort:
    label: str
    ordering: tuple[str, ...]  # ascending; "-key" in the URL reverses every field


def _live(now: datetime) -> Q:
    return Q(enabled=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))


class AliasSearchForm(forms.Form):
    """The alias list's search, filter and sort. STATES and SORTS are open tables: an entry's
    fields may be annotations reached through another app's reverse relations (the activity
    figures, aliases/activity_columns.py), and the filter, the column heading's sort link and the
    URL parameter follow."""

    STATES: ClassVar[dict[str, AliasState]] = {
        "on": AliasState("on", _live),
        "off": AliasState("off", lambda now: Q(enabled=False)),
        "expired": AliasState("expired", lambda now: Q(enabled=True, expires_at__lte=now)),
        **{key: AliasState(label, matches) for key, (label, matches) in ACTIVITY_STATES.items()},
    }
    SORTS: ClassVar[dict[str, AliasSort]] = {
        "created": AliasSort("created", ("created_at", "id")),
        "address": AliasSort("address", ("local_part", "domain__name", "id")),
        "site": AliasSort("site", ("site", "local_part", "id")),
        "note": AliasSort("note", ("label", "local_part", "id")),
        **{key: AliasSort(label, ordering) for key, (label, ordering) in ACTIVITY_SORTS.items()},
    }
    DEFAULT_SORT = "-created"
    # Column headings that sort newest or largest first on the first click.
    DESCENDING_FIRST = frozenset({"created", *ACTIVITY_SORTS})
    # Earlier names of sort orders, still understood in bookmarks.
    OLD_SORTS: ClassVar[dict[str, str]] = {"new": "-created", "old": "created", **ACTIVITY_OLD_SORTS}

    q = forms.CharField(
        label="Search",
        max_length=320,
        required=False,
        validators=[_refuse_control_characters],
        help_text="A whole address as pasted from a mail, or part of a name, site or note.",
    )
    state = forms.ChoiceField(label="Show", required=False)
    sort = forms.ChoiceField(label="Sort by", required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        state = self.fields["state"]
        assert isinstance(state, forms.ChoiceField)
        state.choices = [("", "all"), *((key, entry.label) for key, entry in self.STATES.items())]
        sort = self.fields["sort"]
        assert isinstance(sort, forms.ChoiceField)
        sort.choices = [
            *((f"-{key}", f"{entry.label}, descending") for key, entry in self.SORTS.items()),
            *((key, entry.label) for key, entry in self.SORTS.items()),
            *((old, old) for old in self.OLD_SORTS),
        ]

    def _valid(self, name: str) -> str:
        return str(self.cleaned_data.get(name) or "") if self.is_valid() else ""

    @property
    def query(self) -> str:
        return self._valid("q").strip()

    @property
    def state_key(self) -> str:
        return self._valid("state")

    @property
    def sort_key(self) -> str:
        key = self._valid("sort") or self.DEFAULT_SORT
        return self.OLD_SORTS.get(key, key)

    @property
    def ordering(self) -> tuple[str, ...]:
        key = self.sort_key
        fields = self.SORTS[key.removeprefix("-")].ordering
        return tuple(f"-{f}" for f in fields) if key.startswith("-") else fields

    def filter(self, aliases: QuerySet[Alias, Any], now: datetime) -> QuerySet[Alias, Any]:
        """The aliases matching the search and the state, in the chosen order."""
        if self.query:
            aliases = aliases.filter(_matching(self.query))
        if self.state_key:
            aliases = aliases.filter(self.STATES[self.state_key].matches(now))
        return aliases.order_by(*self.ordering)

    def sort_link(self, key: str) -> tuple[str, str]:
        """(the sort parameter a column heading links to, its aria-sort value); ("", "") for a
        column that does not sort (key "")."""
        if not key:
            return "", ""
        current = self.sort_key
        if current == key:
            return f"-{key}", "ascending"
        if current == f"-{key}":
            return key, "descending"
        return (f"-{key}" if key in self.DESCENDING_FIRST else key), "none"

    @property
    def page_query(self) -> str:
        """The search as a query string prefix for page links ("q=...&sort=...&")."""
        return self.link()[1:] + "&"

    def link(self, **changes: str | int) -> str:
        """ "?q=…&state=…&sort=…" of this search with some values changed (page: first unless given)."""
        params: dict[str, str | int] = {"q": self.query, "state": self.state_key, "sort": self.sort_key, **changes}
        if params["sort"] == self.DEFAULT_SORT:
            del params["sort"]
        return "?" + urlencode({k: v for k, v in params.items() if v})


def _matching(query: str) -> Q:
    """A whole address as pasted (Name <a@b>, mailto:a@b) matches it exactly; other text matches
    part of the name, site or note."""
    _, address = parseaddr(query.removeprefix("mailto:"))
    local_part, at, domain = (address or query).strip().strip("<>").lower().rpartition("@")
    if at and local_part:
        return Q(local_part=local_part, domain__name=domain) if domain else Q(local_part=local_part)
    return Q(local_part__icontains=query) | Q(site__icontains=query) | Q(label__icontains=query)


MAX_BULK = 500


class AliasIdsField(forms.Field):
    """Alias ids ticked in the list (several values of one name); which are the user's own is
    the view's check."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[int]:
        values = value if isinstance(value, list | tuple) else ([value] if value else [])
        if len(values) > MAX_BULK:
            raise ValidationError(f"Select at most {MAX_BULK} addresses at a time.")
        if not all(isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 18 for v in values):
            raise ValidationError("That selection is not a list of your addresses.")
        return sorted({int(v) for v in values})


class ListReturnForm(forms.Form):
    """Where an action taken from the alias list goes back to: the list as it was (search,
    filter, sort, page). Only a URL of the list itself is taken."""

    next = forms.CharField(required=False, max_length=2000, widget=forms.HiddenInput)

    def clean_next(self) -> str:
        value: str = self.cleaned_data["next"]
        list_url = reverse("aliases:list")
        if not value:
            return ""
        if not (
            value.startswith(list_url)
            and value.isprintable()
            and "\\" not in value
            and url_has_allowed_host_and_scheme(value, allowed_hosts=None)
        ):
            raise ValidationError("That is not a page of your alias list.")
        return value


class AliasBulkForm(ListReturnForm):
    """Several aliases switched off, on or deleted at once, after one confirmation."""

    ACTIONS: ClassVar[dict[str, str]] = {"off": "Switch off", "on": "Switch on", "delete": "Delete"}

    action = forms.ChoiceField(choices=list(ACTIONS.items()), widget=forms.HiddenInput)
    ids = AliasIdsField(error_messages={"required": "Select at least one address first (tick its box)."})
    # "yes" from the confirmation page, or from the browser's confirm() when scripts run.
    confirmed = forms.ChoiceField(choices=[("", ""), ("yes", "yes")], required=False, widget=forms.HiddenInput)


class DomainForm(forms.Form):
    name = forms.CharField(label="Domain name", max_length=253, help_text="For example alias.example.org")
    KINDS = [
        ("mailbox", "Mailbox domain: holds people's mailboxes from the directory"),
        ("alias", "Alias domain: only forwarding addresses; every user may make aliases here"),
    ]
    # Chosen explicitly: a checkbox left alone made every new domain a mailbox domain.
    kind = forms.ChoiceField(label="Kind of domain", choices=KINDS, widget=forms.RadioSelect)
    catchall_destinations = forms.CharField(
        label="Catch-all: deliver any other address of this domain to",
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Mail addresses, one a line or separated by commas. Leave empty for no catch-all. "
        "Addresses on our own domains must be existing mailboxes or aliases.",
    )
    catchall_owner_uid = forms.CharField(
        label="Personal catch-all domain of (user name)",
        required=False,
        max_length=64,
        help_text="Every address of this domain not otherwise defined reaches this user; "
        "they may also make aliases here.",
    )

    def __init__(self, data: Any = None, *, instance: Domain | None = None) -> None:
        self.instance = instance or Domain()
        self.catchall_owner_mail = ""
        initial = {}
        if instance is not None:
            initial = {
                "name": instance.name,
                "kind": "alias" if instance.is_alias_domain else "mailbox",
                "catchall_destinations": "\n".join(instance.catchall_addresses),
                "catchall_owner_uid": instance.catchall_owner.get_username() if instance.catchall_owner else "",
            }
        super().__init__(data, initial=initial)
        if instance is not None:
            # Renaming would silently move every alias and leave its tombstones behind.
            self.fields["name"].disabled = True
            self.fields["name"].help_text = "A domain cannot be renamed."

    def clean_name(self) -> str:
        name = normalize_domain(self.cleaned_data["name"])
        routing = settings.VACATION_ROUTING_DOMAIN.lower()
        if name == routing or name.endswith("." + routing):
            # Postfix routes vacation copies through these names: as a mail domain, every copy
            # would be delivered there instead, or bounce to the sender naming the routing address.
            raise ValidationError(
                f"{name} is the vacation routing domain (or its hand-off subdomain), not a mail domain."
            )
        if Domain.objects.filter(name__iexact=name).exclude(pk=self.instance.pk).exists():
            raise ValidationError(f"{name} is already a domain here.")
        return name

    def clean_catchall_destinations(self) -> str:
        addresses = normalize_address_list(self.cleaned_data["catchall_destinations"])
        if len(addresses) > MAX_CATCHALL_DESTINATIONS:
            raise ValidationError(f"At most {MAX_CATCHALL_DESTINATIONS} addresses.")
        ours = set(Domain.objects.values_list("name", flat=True))
        for address in addresses:
            local_part, domain_name = address.split("@")
            if domain_name not in ours:
                continue  # outside: any valid address
            if Alias.objects.filter(local_part=local_part, domain__name=domain_name).exists():
                continue
            try:
                exists = directory.mail_exists(address)
            except directory.DirectoryUnavailable:
                raise ValidationError(UNAVAILABLE) from None
            if not exists:
                raise ValidationError(f"{address} is on one of our domains but is no mailbox or alias.")
        return ",".join(addresses)

    def clean_catchall_owner_uid(self) -> str:
        uid: str = self.cleaned_data["catchall_owner_uid"].strip()
        if not uid:
            return ""
        if not directory.UID_PATTERN.fullmatch(uid):
            raise ValidationError("That is not a user name.")
        try:
            user = directory.get_user(uid)
        except directory.DirectoryUnavailable:
            raise ValidationError(UNAVAILABLE) from None
        if user is None:
            raise ValidationError(f"There is no user {uid}.")
        try:
            # Postfix maps the catch-all to this address; it must be as safe as any other.
            self.catchall_owner_mail = normalize_address(user.mail)
        except ValidationError:
            raise ValidationError(f"{uid} has no usable mail address in the directory.") from None
        return uid

    def clean_kind(self) -> str:
        value: str = self.cleaned_data["kind"]
        if self.instance.is_alias_domain and value != "alias":
            count = Alias.objects.filter(domain_id=self.instance.pk).count()
            if count:
                # Users chose these addresses on an alias domain; they would stop being offered.
                raise ValidationError(f"{count} aliases use this domain; it stays an alias domain while they exist.")
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("catchall_destinations") and cleaned.get("catchall_owner_uid"):
            raise ValidationError(
                "A domain has either a catch-all to addresses or a personal catch-all owner, not both."
            )
        return cleaned

    def apply(self) -> Domain:
        """The domain with the cleaned values (not saved)."""
        domain = self.instance
        if domain.pk is None:
            domain.name = self.cleaned_data["name"]
        domain.is_alias_domain = self.cleaned_data["kind"] == "alias"
        domain.catchall_destinations = self.cleaned_data["catchall_destinations"]
        return domain
