"""CSV imports in batches: one map publication request per batch of alias rows, committed with
them or not at all; one directory search per batch answering the forms' checks, read for that
batch; a batch that breaks off changes nothing and publishes nothing, the ones before it are
committed and published."""

from collections.abc import Callable, Iterator
from typing import Any

import ldap3
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts import directory
from accounts.models import SenderSuspension
from aliases.models import Alias, AliasTombstone, Domain
from aliases.services import address_in_use, checks_read_ahead, creation_refusal
from audit.models import AuditEvent
from bulk import csvfiles, services
from bulk.models import ImportJob
from postfix import publication
from postfix.models import MapGeneration, PublicationRequest
from tests.test_bulk_import import admin, alias_domain, apply, cleanup_uids, dry_run, outcomes, tag  # noqa: F401
from tests.test_publication import lookup, map_dir  # noqa: F401 -- map_dir is a fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def ldap_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The directory operations the code under test sends (the real directory still answers)."""
    calls: list[str] = []
    for name in ("bind", "search", "add"):
        real = getattr(ldap3.Connection, name)

        def counted(self: ldap3.Connection, *args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(ldap3.Connection, name, counted)
    yield calls


def requested_keys(since: int) -> list[set[str]]:
    """The keys of each publication request made after generation `since`, in order."""
    requests = PublicationRequest.objects.filter(generation__gt=since).order_by("generation")
    assert not requests.filter(everything=True).exists()
    return [set(keys.split("\n")) for keys in requests.values_list("keys", flat=True)]


def generation() -> int:
    return MapGeneration.objects.filter(pk=1).values_list("requested", flat=True).first() or 0


def aliases_file(domain: str, owners: list[str], count: int, t: str) -> tuple[str, list[str]]:
    addresses = [f"b{n:03d}{t}@{domain}" for n in range(count)]
    rows = "".join(f"{address},{owners[n % len(owners)]}\n" for n, address in enumerate(addresses))
    return "address,owner\n" + rows, addresses


def checked(client: Any, domain: str, owners: list[str], count: int) -> tuple[ImportJob, list[str], str]:
    """The dry run of a file of `count` aliases; their addresses; the tag that ends their names."""
    t = tag()
    text, addresses = aliases_file(domain, owners, count, t)
    return dry_run(client, "aliases", text), addresses, t


@pytest.mark.e2e
def test_an_alias_import_asks_once_per_batch_for_every_address_and_the_map_has_them_all(
    admin,  # noqa: F811
    alias_domain,  # noqa: F811
    make_directory_user,
    map_dir,  # noqa: F811
) -> None:
    owners = [make_directory_user().uid for _ in range(3)]
    t = tag()
    text, addresses = aliases_file(alias_domain.name, owners, services.BATCH + 7, t)
    dry = dry_run(admin, "aliases", text)
    before = generation()
    job = apply(admin, dry)
    assert set(outcomes(job).values()) == {"created"}
    # Two batches, two requests: the first names the first BATCH addresses, the second the rest.
    assert requested_keys(before) == [set(addresses[: services.BATCH]), set(addresses[services.BATCH :])]
    outcome = publication.publish(coalesce=False)
    assert outcome.status == "published", outcome.error
    for address, owner in zip(addresses, owners * len(addresses), strict=False):
        assert lookup("virtual", address) == f"{owner}@{settings.MAIL_DOMAIN}"


def test_a_dry_run_asks_for_no_publication(admin, alias_domain, make_directory_user) -> None:  # noqa: F811
    text, _ = aliases_file(alias_domain.name, [make_directory_user().uid], services.BATCH + 1, tag())
    before = generation()
    job = dry_run(admin, "aliases", text)
    assert set(outcomes(job).values()) == {"valid"}
    assert generation() == before and not PublicationRequest.objects.filter(generation__gt=before).exists()


@pytest.mark.e2e
def test_an_import_breaking_off_mid_batch_keeps_and_publishes_the_batches_before_and_nothing_of_its_own(
    admin,  # noqa: F811
    alias_domain,  # noqa: F811
    make_directory_user,
    map_dir,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = make_directory_user().uid
    dry, addresses, t = checked(admin, alias_domain.name, [owner], services.BATCH + 10)
    breaking = addresses[services.BATCH + 5]
    create = services.create_alias

    def dies_on_one_row(*args: Any, **kwargs: Any) -> Alias:
        if f"{kwargs['local_part']}@{kwargs['domain'].name}" == breaking:
            raise RuntimeError("the worker died here")  # not a row's error: the batch is lost
        return create(*args, **kwargs)

    monkeypatch.setattr(services, "create_alias", dies_on_one_row)
    before = generation()
    with pytest.raises(RuntimeError):
        apply(admin, dry)
    job = ImportJob.objects.get(source=dry)
    made = set(Alias.objects.filter(local_part__endswith=t).values_list("local_part", flat=True))
    # The first batch whole; of the second, not even the five rows before the one that broke.
    assert made == {address.partition("@")[0] for address in addresses[: services.BATCH]}
    assert len(outcomes(job)) == services.BATCH == ImportJob.objects.get(pk=job.pk).processed_rows
    assert requested_keys(before) == [set(addresses[: services.BATCH])]
    outcome = publication.publish(coalesce=False)
    assert outcome.status == "published", outcome.error
    assert lookup("virtual", addresses[0]) == f"{owner}@{settings.MAIL_DOMAIN}"
    assert lookup("virtual", addresses[services.BATCH]) is None

    # The retry goes on from the batch that broke off, and publishes it.
    monkeypatch.setattr(services, "create_alias", create)
    published = generation()
    assert services.run_import(job.pk) == "done"
    assert set(outcomes(job).values()) == {"created"} and len(outcomes(job)) == len(addresses)
    assert requested_keys(published) == [set(addresses[services.BATCH :])]
    outcome = publication.publish(coalesce=False)
    assert outcome.status == "published", outcome.error
    assert lookup("virtual", breaking) == f"{owner}@{settings.MAIL_DOMAIN}"


def test_a_row_refused_in_a_batch_is_left_out_whole_and_its_batch_still_published(
    admin,  # noqa: F811
    alias_domain,  # noqa: F811
    make_directory_user,
    settings,
) -> None:
    settings.ALIAS_LIMIT_PER_USER = 3
    owner = make_directory_user().uid
    t = tag()
    text, addresses = aliases_file(alias_domain.name, [owner], 5, t)
    before = generation()
    # The dry run takes the batch's steps in order, so it finds the limit as the import will.
    dry = dry_run(admin, "aliases", text)
    assert outcomes(dry) == {2: "valid", 3: "valid", 4: "valid", 5: "error", 6: "error"}
    job = apply(admin, dry)
    assert outcomes(job) == {2: "created", 3: "created", 4: "created", 5: "error", 6: "error"}
    assert "limit of 3 aliases" in job.rows.get(line=5).message
    assert set(Alias.objects.filter(local_part__endswith=t).values_list("local_part", flat=True)) == {
        address.partition("@")[0] for address in addresses[:3]
    }
    # One request for the batch; the refused rows' keys may be in it (publishing them changes nothing).
    [keys] = requested_keys(before)
    assert keys >= set(addresses[:3])


def test_each_batch_asks_the_directory_once_over_one_connection(
    admin,  # noqa: F811
    alias_domain,  # noqa: F811
    make_directory_user,
    cleanup_uids,  # noqa: F811
    ldap_calls: list[str],
) -> None:
    owners = [make_directory_user().uid for _ in range(4)]
    t = tag()
    text, _ = aliases_file(alias_domain.name, owners, services.BATCH + 1, t)
    assert imported(admin, "aliases", text, ldap_calls) == ["bind", "search", "search"]

    uids = [f"n{n:03d}{t}" for n in range(services.BATCH + 1)]
    cleanup_uids.extend(uids)
    text = "uid,name,mail\n" + "".join(f"{uid},New Person,{uid}@{settings.MAIL_DOMAIN}\n" for uid in uids)
    assert imported(admin, "users", text, ldap_calls) == ["bind", "search", *["add"] * services.BATCH, "search", "add"]


def imported(client: Any, kind: str, text: str, ldap_calls: list[str]) -> list[str]:
    """The directory operations of the worker's part of an import (the pages' own left out)."""
    dry = dry_run(client, kind, text)
    assert client.post(f"/bulk/imports/{dry.pk}/import/").status_code == 302
    ldap_calls.clear()
    job = ImportJob.objects.get(source=dry)
    assert services.run_import(job.pk) == "done"
    assert set(outcomes(job).values()) == {"created"}
    return list(ldap_calls)


def test_each_batch_reads_the_directory_afresh(
    admin,  # noqa: F811
    alias_domain,  # noqa: F811
    make_directory_user,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dry, addresses, _ = checked(admin, alias_domain.name, [make_directory_user().uid], services.BATCH + 2)
    batch = services.AliasRows.batch
    late = addresses[-1]

    def a_mailbox_appears_after_the_first_batch(self: services.AliasRows, rows: list[csvfiles.Row]) -> None:
        batch(self, rows)
        if directory.find_user_by_mail(late) is None:
            make_directory_user(mail=late)

    monkeypatch.setattr(services.AliasRows, "batch", a_mailbox_appears_after_the_first_batch)
    job = apply(admin, dry)
    assert outcomes(job)[services.BATCH + 3] == "error"
    assert "is not available" in job.rows.get(line=services.BATCH + 3).message
    assert set(outcomes(job).values()) == {"created", "error"}


def test_the_read_ahead_answers_as_the_directory_does(make_directory_user: Callable[..., Any]) -> None:
    person = make_directory_user()
    other = make_directory_user(mail=f"Other.{tag()}@{settings.MAIL_DOMAIN}")
    uids = [person.uid, other.uid, f"nobody{tag()}", "Not A Uid", "*"]
    mails = [
        person.mail,
        person.mail.upper(),
        other.mail,
        f"nobody{tag()}@{settings.MAIL_DOMAIN}",
        "*",
        "a)(uid=*",
        "",
        "zoë\x00@x",
    ]
    direct = ([directory.get_user(uid) for uid in uids], [directory.mail_exists(mail) for mail in mails])
    assert direct[1] == [True, True, True, False, False, False, False, False]
    with directory.read_ahead(uids, mails):
        assert ([directory.get_user(uid) for uid in uids], [directory.mail_exists(mail) for mail in mails]) == direct


def test_the_alias_checks_read_ahead_answers_as_the_database_does_and_a_transaction_inside_asks_again(
    alias_domain,  # noqa: F811
    settings,
) -> None:
    settings.ALIAS_LIMIT_PER_USER, settings.ALIAS_CREATION_RATE = 2, 1
    t = tag()
    clean, suspended, full, busy = (User.objects.create(username=f"{name}{t}") for name in ("c", "s", "f", "b"))
    SenderSuspension.objects.create(uid=suspended.username, mail=f"s{t}@{settings.MAIL_DOMAIN}", reason="spam")
    for n in range(2):
        Alias.objects.create(owner=full, local_part=f"full{n}{t}", domain=alias_domain)
    AuditEvent.objects.create(actor_name=busy.username, action="alias.create", target="x")
    Domain.objects.create(name=f"catch{t}.example", catchall_destinations=f"caught{t}@{alias_domain.name}")
    AliasTombstone.objects.create(address=f"gone{t}@{alias_domain.name}")
    owners = [clean, suspended, full, busy]
    addresses = [f"{name}{t}@{alias_domain.name}" for name in ("full0", "FULL1", "gone", "caught", "free")]
    refusals = [creation_refusal(owner) for owner in owners]
    assert refusals[0] is None and all(refusals[1:])
    direct = [address_in_use(address) for address in addresses]
    assert direct == [True, True, True, True, False]
    with CaptureQueriesContext(connection) as queries, checks_read_ahead(addresses):
        read = len(queries)
        assert [address_in_use(a) for a in addresses] == direct
        assert len(queries) == read  # answered without a query
        # The limits are create_alias's to check, in its transaction: always from the database.
        assert [creation_refusal(owner) for owner in owners] == refusals
        free = Alias.objects.create(owner=clean, local_part=f"free{t}", domain=alias_domain)
        assert not address_in_use(free.address)  # as read on entering
        with transaction.atomic():
            assert address_in_use(free.address)  # a service's own check asks the database
