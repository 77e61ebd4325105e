"""Property-based tests (hypothesis) for what a person can type: address validation, map
rendering (nothing a user types adds, removes or changes a map line other than their own) and
the vacation reply composer (no header can be injected into a reply)."""

import email
import re
import secrets
from datetime import timedelta
from email.policy import default

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import RequestFactory
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aliases.addresses import normalize_address, normalize_address_list, normalize_domain, normalize_local_part
from aliases.forms import CustomAliasForm
from aliases.models import Alias, Domain
from aliases.services import create_alias
from outofoffice.forms import VacationForm
from outofoffice.models import VacationReply
from outofoffice.replies import build_reply, reply_text
from outofoffice.rules import LOOP_HEADER, parse_incoming, rule_empty_sender
from postfix import publication

# Characters people (and attackers) type: map and header syntax, LDAP filter and DN
# metacharacters, line breaks, NUL and other controls, bidi and zero-width marks, non-ASCII.
NASTY_ALPHABET = (
    "abcxyzABC019._-+@#,:;\"'<>()[]{}*\\/=|&!?%$ \t\r\n\x00\x01\x0b\x0c\x1b\x7f"
    "\u00a0\u00e9\u0131\u017f\u200b\u200d\u200e\u202a\u202e\u2066\ufeff\uff20\U0001f600"
)
nasty_text = st.text(alphabet=NASTY_ALPHABET, max_size=80)
plausible_local_part = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9._+-]{0,20}", fullmatch=True)
typed = st.one_of(nasty_text, plausible_local_part, st.text(max_size=80))

SAFE_LOCAL_PART = re.compile(r"^[a-z0-9](?:[a-z0-9]|[._-](?=[a-z0-9])){0,63}\Z")
SAFE_DOMAIN = re.compile(r"^[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})+\Z")
FAST = settings(max_examples=300, deadline=None, database=None)


# --- address validation ---------------------------------------------------------------------


@FAST
@given(typed)
@example("alice\n")
@example("alice\x00")
@example("\u0131nfo")  # dotless i: lower-cases to ASCII-looking text in some locales
@example("K\u212a")  # Kelvin sign lower-cases to "k"
def test_a_local_part_is_refused_plainly_or_is_safe_for_every_map(value: str) -> None:
    try:
        local = normalize_local_part(value)
    except ValidationError as exc:
        assert exc.messages and all(message.strip() for message in exc.messages)
        return
    assert SAFE_LOCAL_PART.match(local), local
    assert local == value.lower()
    assert normalize_local_part(local) == local  # stable: stored values validate again


@FAST
@given(typed)
@example("example.org\n")
@example("ex\u00e1mple.org")
@example("example.org.")
def test_a_domain_is_refused_plainly_or_is_plain_ascii(value: str) -> None:
    try:
        domain = normalize_domain(value)
    except ValidationError:
        return
    assert SAFE_DOMAIN.match(domain) and len(domain) <= 253, domain
    assert normalize_domain(domain) == domain


@FAST
@given(st.one_of(typed, st.builds(lambda a, b: f"{a}@{b}", typed, typed)))
@example("a@b.org\r\nBcc: all@example.org")
@example("a@b@c.org")
def test_an_address_is_refused_plainly_or_has_one_safe_local_part_and_domain(value: str) -> None:
    try:
        address = normalize_address(value)
    except ValidationError:
        return
    local, domain = address.split("@")
    assert SAFE_LOCAL_PART.match(local) and SAFE_DOMAIN.match(domain)


@FAST
@given(st.lists(st.one_of(typed, st.just("ok@example.org")), max_size=5).map(lambda items: ",\n".join(items)))
def test_an_address_list_is_refused_plainly_or_every_item_is_safe(value: str) -> None:
    try:
        addresses = normalize_address_list(value)
    except ValidationError:
        return
    for address in addresses:
        local, domain = address.split("@")
        assert SAFE_LOCAL_PART.match(local) and SAFE_DOMAIN.match(domain)
    assert len(addresses) == len(set(addresses))


# --- map rendering ------------------------------------------------------------------------------


@pytest.fixture
def world(db, make_directory_user) -> dict[str, object]:
    """Someone else's mailbox, aliases and catch-all, and the attacker who types."""
    victim_entry = make_directory_user()
    victim = User.objects.create(username=victim_entry.uid, email=victim_entry.mail)
    attacker_entry = make_directory_user(uid=f"mallory{secrets.token_hex(3)}")
    attacker = User.objects.create(username=attacker_entry.uid, email=attacker_entry.mail)
    alias_domain = Domain.objects.create(name="alias.example.org", is_alias_domain=True)
    catchall = Domain.objects.create(name="catchall.example.org", is_alias_domain=True, catchall_owner=victim)
    Alias.objects.create(owner=victim, local_part="victimsite", domain=alias_domain)
    Alias.objects.create(owner=victim, local_part="switchedoff", domain=alias_domain, enabled=False)
    Alias.objects.create(owner=victim, local_part="shop", domain=catchall)
    request = RequestFactory().post("/aliases/new/custom/")
    request.user = attacker
    return {"attacker": attacker, "domains": [alias_domain, catchall], "request": request}


def _lines(rendered: dict[str, list[str]]) -> dict[str, set[str]]:
    return {name: set(lines) for name, lines in rendered.items()}


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(local_part=typed, domain_index=st.integers(0, 1), label=nasty_text, expires=st.sampled_from(["", "2999-01-01"]))
@example(local_part="victimsite", domain_index=0, label="", expires="")
@example(local_part="switchedoff", domain_index=0, label="", expires="")
@example(local_part="shop\nevil@alias.example.org mallory@example.org", domain_index=1, label="", expires="")
@example(local_part="postmaster", domain_index=1, label="", expires="")
def test_nothing_typed_into_the_alias_form_touches_a_map_line_but_the_typists_own(
    world, local_part: str, domain_index: int, label: str, expires: str
) -> None:
    attacker, domain = world["attacker"], world["domains"][domain_index]
    before = _lines(publication.render_tables())
    with transaction.atomic():
        data = {"local_part": local_part, "domain": domain.pk, "label": label, "expires_on": expires}
        form = CustomAliasForm(attacker, data)
        if form.is_valid():
            alias = create_alias(
                world["request"],
                attacker,
                local_part=form.chosen_local_part,
                domain=form.cleaned_data["domain"],
                kind=form.kind,
                label=form.cleaned_data["label"],
                expires_at=form.expires_at,
            )
            own = {alias.address}
        else:
            own = set()
        after = _lines(publication.render_tables())
        transaction.set_rollback(True)
    for name in before:
        assert before[name] <= after[name], f"{name}: a line of someone else was removed or changed"
        added = after[name] - before[name]
        assert {line.split(" ", 1)[0] for line in added} <= own, f"{name}: {added}"
        # Exactly one line a table: own address -> own mailbox, and -> own logins (sender_login).
        value = f"{attacker.username}, {attacker.email}" if name == "sender_login" else attacker.email
        for line in added:
            assert line == f"{next(iter(own))} {value}"


# Any text at all, as if a form had let it through (PostgreSQL itself refuses NUL in text).
any_stored_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=200)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(label=any_stored_text, site=any_stored_text)
def test_notes_and_sites_never_reach_the_maps(world, label: str, site: str) -> None:
    attacker, domain = world["attacker"], world["domains"][0]
    with transaction.atomic():
        alias = Alias.objects.create(owner=attacker, local_part="plainname", domain=domain)
        plain = publication.render_tables()
        Alias.objects.filter(pk=alias.pk).update(label=label, site=site)  # even if a form let it through
        assert publication.render_tables() == plain
        transaction.set_rollback(True)


# --- the vacation reply composer ----------------------------------------------------------------

REPLY_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "auto-submitted",
    "x-auto-response-suppress",
    LOOP_HEADER.lower(),
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}
header_value = st.one_of(
    nasty_text,
    st.builds(lambda a, b: f"{a}\r\n{b}: injected", nasty_text, st.sampled_from(["Bcc", "Cc", "To", "Subject"])),
)
raw_headers = st.lists(
    st.tuples(st.sampled_from(["Subject", "Message-ID", "From", "To", "Cc", "X-Junk"]), header_value), max_size=6
).map(lambda items: "".join(f"{name}: {value}\r\n" for name, value in items).encode("utf-8", "surrogatepass"))
raw_bytes = st.one_of(raw_headers, st.binary(max_size=300), raw_headers.map(lambda head: head + b"\xff\xfe\x00"))


@settings(max_examples=300, deadline=None, database=None)
@given(
    subject=header_value,
    body=st.text(max_size=300),
    delegate=header_value,
    raw=raw_bytes,
    sender=st.one_of(st.just("carol@remote.example"), st.emails(), nasty_text),
)
@example(
    subject="Away\r\nBcc: all@example.org",
    body="x",
    delegate="",
    raw=b"Message-ID: <a@b>\r\nBcc: x@y\r\n",
    sender="carol@remote.example",
)
@example(subject="Away", body="x", delegate="", raw=b"Message-ID: <a@b>\r\n Bcc: folded@x\r\n", sender="c@r.example")
def test_no_header_can_be_injected_into_a_vacation_reply(
    subject: str, body: str, delegate: str, raw: bytes, sender: str
) -> None:
    now = timezone.now()
    form = VacationForm(
        data={
            "enabled": "on",
            "starts_at": "",
            "ends_at": "",
            "subject": subject,
            "body": body,
            "internal_body": "",
            "delegate": delegate,
            "interval_days": "7",
        }
    )
    if not form.is_valid():
        assert form.errors  # refused at input, with a message; nothing is stored
        return
    vacation = VacationReply(uid="alice", address="alice@example.org", **form.cleaned_data)
    vacation.starts_at = vacation.starts_at or now - timedelta(hours=1)
    incoming = parse_incoming(sender, raw)
    if rule_empty_sender(incoming, None, now) is not None:  # type: ignore[arg-type]
        return  # the responder stops before composing: no reply to an unusable envelope sender
    try:
        wire = build_reply(vacation, incoming, internal=False, now=now)
    except (ValueError, TypeError):
        return  # the responder answers "no vacation reply (unusable reply text)"; nothing is sent
    parsed = email.message_from_bytes(wire, policy=default)
    names = [name.lower() for name in parsed.keys()]
    assert set(names) <= REPLY_HEADERS, names
    assert len(names) == len(set(names)), names  # nothing doubled (a second To, Subject, ...)
    assert [a.addr_spec for a in parsed["To"].addresses] == ([incoming.sender] if incoming.sender else [])
    assert parsed["Subject"] == f"Auto: {vacation.subject or 'Out of office'}"
    # The user's own text, line breaks aside (a bare CR typed into the text becomes one).
    assert re.sub(r"\r\n?", "\n", parsed.get_content()) == re.sub(r"\r\n?", "\n", reply_text(vacation, internal=False))
    for line in wire.split(b"\r\n"):
        assert b"\n" not in line and b"\r" not in line and b"\x00" not in line
