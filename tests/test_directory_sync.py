"""Alias targets follow the directory: a `mail` changed, removed or deleted by another LDAP tool
reaches the maps through the periodic sync, without anyone signing in (real slapd, postmap
and the private Postfix)."""

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import ldap3
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from accounts import directory
from accounts.directory import DirectoryUser
from aliases import tasks
from aliases.models import Alias, Domain
from postfix import publication
from tests.test_postfix_e2e import delivered, send, wait_for_rcpt
from tests.test_publication import lookup

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def reload_every_time() -> Iterator[None]:
    with override_settings(POSTFIX_RELOAD_MIN_INTERVAL=0):
        yield


@pytest.fixture
def world(make_directory_user: Callable[..., DirectoryUser]) -> dict[str, object]:
    """A person with an alias on an alias domain and one on a catch-all domain."""
    tag = secrets.token_hex(3)
    entry = make_directory_user(uid=f"dir{tag}")
    catchall_target = make_directory_user(uid=f"cat{tag}")
    owner = User.objects.create(username=entry.uid, email=entry.mail)
    alias_domain = Domain.objects.create(name=f"alias{tag}.example.org", is_alias_domain=True)
    catchall = Domain.objects.create(name=f"catch{tag}.example.org", catchall_destinations=catchall_target.mail)
    return {
        "tag": tag,
        "entry": entry,
        "owner": owner,
        "catchall_target": catchall_target.mail,
        "alias": Alias.objects.create(owner=owner, local_part="shop", domain=alias_domain),
        "covered": Alias.objects.create(owner=owner, local_part="news", domain=catchall),
    }


def ldap_modify(dn: str, changes: dict[str, list[tuple[str, list[str]]]]) -> None:
    """What ldapmodify does: a raw modify, not the app's own user services."""
    with directory.connection() as conn:
        conn.modify(dn, changes)


def sync_and_publish() -> str:
    result = tasks.sync_directory()
    outcome = publication.publish(coalesce=False)
    assert outcome.status in ("published", "unchanged", "nothing to do"), outcome.error
    return result


@pytest.mark.e2e
def test_a_mail_changed_by_another_ldap_tool_reaches_virtual_and_the_next_mail_the_new_mailbox(world: dict) -> None:
    alias, entry = world["alias"], world["entry"]
    sync_and_publish()
    assert lookup("virtual", alias.address) == entry.mail
    new_mail = f"renamed{world['tag']}@{settings.MAIL_DOMAIN}"

    ldap_modify(entry.dn, {"mail": [(ldap3.MODIFY_REPLACE, [new_mail])]})
    assert sync_and_publish() == "requested"

    assert lookup("virtual", alias.address) == new_mail
    assert lookup("virtual", world["covered"].address) == new_mail
    assert wait_for_rcpt(alias.address, accepted=True)[0] == 250
    assert delivered(new_mail, send(alias.address))
    # The cached user row follows too (nobody signed in).
    assert User.objects.get(pk=world["owner"].pk).email == new_mail


def _delete_entry(entry: DirectoryUser) -> None:
    with directory.connection() as conn:
        conn.delete(entry.dn)


def _remove_mail(entry: DirectoryUser) -> None:
    # mail is required by mailAccount: removing it takes the object class along.
    ldap_modify(
        entry.dn,
        {"objectClass": [(ldap3.MODIFY_DELETE, ["mailAccount"])], "mail": [(ldap3.MODIFY_DELETE, [])]},
    )


@pytest.mark.e2e
@pytest.mark.parametrize("change", [_delete_entry, _remove_mail], ids=["entry deleted", "mail removed"])
def test_aliases_of_an_owner_without_a_mailbox_are_refused_at_rcpt_naming_no_mailbox(
    world: dict, change: Callable[[DirectoryUser], None]
) -> None:
    alias, covered, entry = world["alias"], world["covered"], world["entry"]
    sync_and_publish()
    assert wait_for_rcpt(alias.address, accepted=True)[0] == 250

    change(entry)
    assert sync_and_publish() == "requested"

    for address in (alias.address, covered.address):  # the catch-all does not take it either
        code, reply = wait_for_rcpt(address, accepted=False)
        assert code == 550 and "5.1.1" in reply, reply
        assert entry.mail not in reply and world["catchall_target"] not in reply
        assert reply.count("@") == 1  # the refused address itself, nothing else
        assert lookup("virtual", address) is None
    # The same words as for a disabled alias: nothing tells the two apart.
    assert lookup("recipient_access", alias.address) == "550 5.1.1 This address is disabled"


UNSAFE_MAIL = [
    "../../etc@example.org",
    "a/b@example.org",
    "..@example.org",
    "two words@example.org",
    "x#y@example.org",
    'x"y@example.org',
    "x'y@example.org",
    "a@b@example.org",
    "tab\there@example.org",
]


@pytest.mark.parametrize("mail", UNSAFE_MAIL)
def test_an_unsafe_mail_value_never_reaches_a_map_and_is_logged_with_its_entry(
    make_directory_user: Callable[..., DirectoryUser], caplog: pytest.LogCaptureFixture, mail: str
) -> None:
    uid = f"bad{secrets.token_hex(3)}"
    entry = make_directory_user(uid=uid, mail=mail)
    owner = User.objects.create(username=uid, email="")
    alias = Alias.objects.create(
        owner=owner, local_part="site", domain=Domain.objects.create(name="unsafe.example.org", is_alias_domain=True)
    )

    with caplog.at_level(logging.WARNING, logger="aliases.postfix_feature"):
        maps = {name: "".join(f"{line}\n" for line in lines) for name, lines in publication.render_tables().items()}

    local = mail.lower().rpartition("@")[0]
    for name, text in maps.items():
        assert local not in text, f"{name}: {text}"
    assert f"{alias.address} 550 5.1.1 This address is disabled\n" in maps["recipient_access"]
    [warning] = [record for record in caplog.records if uid in record.getMessage()]
    assert warning.levelno == logging.WARNING and entry.dn in warning.getMessage()


def test_an_unsafe_mail_value_is_in_no_published_table(
    map_dir: Path, make_directory_user: Callable[..., DirectoryUser]
) -> None:
    entry = make_directory_user(mail="../../etc@example.org")
    User.objects.create(username=entry.uid, email="")
    publication.publish(force=True, coalesce=False)

    for name in settings.POSTFIX_MAPS:
        assert "../" not in (map_dir / name).read_text()
        assert lookup(name, "../../etc@example.org", map_dir) is None


@pytest.fixture
def map_dir(tmp_path: Path) -> Iterator[Path]:
    directory_path = tmp_path / "maps"
    directory_path.mkdir()
    with override_settings(POSTFIX_MAP_DIR=directory_path, POSTFIX_RELOAD_COMMAND="/bin/true"):
        yield directory_path


def test_the_sync_requests_a_publication_only_when_an_address_changed(world: dict) -> None:
    tasks.sync_directory()  # whatever was noted before this test
    before = publication.requested_generation()

    with CaptureQueriesContext(connection) as queries:
        assert tasks.sync_directory() == "unchanged"
    assert publication.requested_generation() == before
    assert len(queries) <= 4  # one row read, whatever the number of people

    entry = world["entry"]
    ldap_modify(entry.dn, {"mail": [(ldap3.MODIFY_REPLACE, [f"moved{world['tag']}@{settings.MAIL_DOMAIN}"])]})
    assert tasks.sync_directory() == "requested"
    assert publication.requested_generation() == before + 1
    assert tasks.sync_directory() == "unchanged"
    assert publication.requested_generation() == before + 1


def test_the_sync_runs_every_minute_from_the_beat_schedule() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["directory-sync"]
    assert entry["task"] == "aliases.tasks.sync_directory"
    assert entry["schedule"] == 60.0
    assert tasks.sync_directory.name == entry["task"]


def test_a_publication_reads_the_directory_the_same_number_of_times_for_any_number_of_owners(
    map_dir: Path, make_directory_user: Callable[..., DirectoryUser], monkeypatch: pytest.MonkeyPatch
) -> None:
    domain = Domain.objects.create(name="many.example.org", is_alias_domain=True)
    opened = []
    real_connection = directory.connection

    def counted() -> AbstractContextManager[ldap3.Connection]:
        opened.append(1)
        return real_connection()

    monkeypatch.setattr(directory, "connection", counted)

    def connections_for_a_publication(owners: int) -> int:
        for _ in range(owners):
            entry = make_directory_user()
            owner = User.objects.create(username=entry.uid, email=entry.mail)
            Alias.objects.create(owner=owner, local_part=f"a{entry.uid}", domain=domain)
        opened.clear()
        assert publication.publish(force=True, coalesce=False).status == "published"
        return len(opened)

    assert connections_for_a_publication(1) == connections_for_a_publication(12)
