from datetime import date, datetime, time
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts import directory
from accounts.forms import UNAVAILABLE
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
from aliases.services import address_in_use, creation_refusal, free_local_parts, random_local_part, usable_domains

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
    local_part = address.rpartition("@")[0]
    try:
        taken = directory.mail_exists(address)
        others = directory.people_named(local_part) - {person} if person is not None and not taken else set()
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
    expires_on = forms.DateField(
        label="Stops working on (optional)",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
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
        cleaned = super().clean() or {}
        refusal = creation_refusal(self.owner)
        if refusal:
            raise ValidationError(refusal, code="limit")
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
                    check_available(f"{candidate}@{domain.name}")
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
        help_text="Paste the site's address (https://www.example.com/signup) or type its name.",
    )
    local_part = forms.CharField(
        label="Name (before the @)",
        max_length=MAX_LOCAL_PART,
        strip=False,
        required=False,
        help_text="Leave empty to use the name made from the site.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["site"].widget.attrs.update(autocomplete="off", inputmode="url")

    def clean_site(self) -> str:
        name = site_name(self.cleaned_data["site"])
        if not name:
            raise ValidationError("Enter the site's address or name.")
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


def proposal_for(site: str, domain: Domain, person: str | None = None) -> str:
    """The first free name made from the site: twittercom, then twittercom2, twittercom3, ..."""
    base = propose_local_part(site)
    if not base:
        return ""
    candidates = [base] + [f"{base}{n}" for n in range(2, 21)]
    for candidate in free_local_parts(candidates, domain):
        try:
            check_available(f"{candidate}@{domain.name}", person)
        except ValidationError as exc:
            if exc.code == "unavailable":
                raise
            continue
        return candidate
    return ""


class AliasEditForm(forms.Form):
    label = forms.CharField(label="Note", max_length=100, required=False, validators=[_refuse_control_characters])
    expires_on = forms.DateField(
        label="Stops working on",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
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


class AliasSearchForm(forms.Form):
    SORTS = {
        "new": ("-created_at", "-id"),
        "old": ("created_at", "id"),
        "address": ("local_part", "domain__name", "id"),
        "site": ("site", "local_part", "id"),
        "note": ("label", "local_part", "id"),
    }
    q = forms.CharField(label="Search", max_length=100, required=False, validators=[_refuse_control_characters])
    sort = forms.ChoiceField(
        label="Sort by",
        required=False,
        choices=[
            ("new", "newest first"),
            ("old", "oldest first"),
            ("address", "address"),
            ("site", "site"),
            ("note", "note"),
        ],
    )

    @property
    def query(self) -> str:
        return str(self.cleaned_data.get("q") or "") if self.is_valid() else ""

    @property
    def sort_key(self) -> str:
        return str(self.cleaned_data.get("sort") or "new") if self.is_valid() else "new"

    @property
    def ordering(self) -> tuple[str, ...]:
        return self.SORTS[self.sort_key]

    @property
    def page_query(self) -> str:
        """The search as a query string prefix for page links ("q=...&sort=...&")."""
        params = {"q": self.query, "sort": self.sort_key} if self.query else {"sort": self.sort_key}
        return urlencode(params) + "&"


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
