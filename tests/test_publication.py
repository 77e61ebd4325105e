"""Map rendering and publication against the real postmap (no Postfix needed here)."""

import json
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import RequestFactory, override_settings
from django.utils import timezone

from accounts.directory import DirectoryUser
from accounts.models import SenderSuspension
from aliases import services
from aliases.models import Alias, AliasTombstone, Domain
from localservices.process import free_port
from postfix import features, publication
from postfix.models import MapGeneration, MapPublication
from postfix.postmap import SUFFIXES

pytestmark = pytest.mark.django_db


def rendered() -> dict[str, str]:
    """Every table's text as the renderer makes it now."""
    return {name: "".join(f"{line}\n" for line in lines) for name, lines in publication.render_tables().items()}


def live() -> dict[str, list[str] | None]:
    return {name: publication.live_lines(name) for name in settings.POSTFIX_MAPS}


def table_type() -> str:
    return str(settings.POSTFIX_MAP_TYPE)


def postmap_query(name: str, key: str, map_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    path = Path(map_dir or settings.POSTFIX_MAP_DIR) / name
    return subprocess.run(
        [
            settings.POSTMAP_COMMAND,
            "-c",
            str(settings.POSTFIX_CONFIG_DIR),
            "-q",
            key,
            f"{settings.POSTFIX_MAP_TYPE}:{path}",
        ],
        capture_output=True,
        text=True,
    )


def lookup(name: str, key: str, map_dir: Path | None = None) -> str | None:
    result = postmap_query(name, key, map_dir)
    return result.stdout.strip() if result.returncode == 0 else None


@pytest.fixture
def map_dir(tmp_path: Path) -> Iterator[Path]:
    """A map directory of this test's own (the private Postfix keeps reading the shared one)."""
    directory = tmp_path / "maps"
    directory.mkdir()
    with override_settings(POSTFIX_MAP_DIR=directory, POSTFIX_RELOAD_COMMAND="/bin/true"):
        yield directory


def make_alias(owner: User, local: str, domain: Domain, **fields: object) -> Alias:
    return Alias.objects.create(owner=owner, local_part=local, domain=domain, **fields)


def person(make_directory_user: Callable[..., DirectoryUser], uid: str, mail: str | None = None) -> User:
    """A user row with its directory entry: alias targets come from the directory."""
    entry = make_directory_user(uid=uid, mail=mail)
    return User.objects.create(username=entry.uid, email=entry.mail)


@pytest.fixture
def owner(make_directory_user: Callable[..., DirectoryUser]) -> User:
    return person(make_directory_user, "owen")


@pytest.fixture
def free_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def alias_domain() -> Domain:
    return Domain.objects.create(name="alias.example.org", is_alias_domain=True)


def test_aliases_forward_to_their_owners_mailbox(owner: User, alias_domain: Domain) -> None:
    make_alias(owner, "twittercom", alias_domain)
    make_alias(owner, "shopexample", alias_domain)

    virtual = rendered()["virtual"]

    assert "shopexample@alias.example.org owen@example.org\n" in virtual
    assert "twittercom@alias.example.org owen@example.org\n" in virtual
    assert virtual.splitlines() == sorted(virtual.splitlines())


def test_disabled_expired_and_deleted_addresses_are_refused(owner: User, alias_domain: Domain) -> None:
    make_alias(owner, "leaked", alias_domain, enabled=False)
    make_alias(owner, "old", alias_domain, expires_at=timezone.now() - timedelta(minutes=1))
    make_alias(owner, "later", alias_domain, expires_at=timezone.now() + timedelta(days=1))
    AliasTombstone.objects.create(address="gone@alias.example.org")

    maps = rendered()

    assert "leaked@alias.example.org 550 5.1.1 This address is disabled\n" in maps["recipient_access"]
    assert "old@alias.example.org 550 5.1.1 This address has expired\n" in maps["recipient_access"]
    assert "gone@alias.example.org 550 5.1.1 This address has been deleted\n" in maps["recipient_access"]
    assert "later@alias.example.org owen@example.org" in maps["virtual"]
    assert "leaked@" not in maps["virtual"] and "old@" not in maps["virtual"]


def test_catch_all_keeps_real_mailboxes_and_merges_targets(
    owner: User, make_directory_user: Callable[..., DirectoryUser]
) -> None:
    mailbox = make_directory_user(mail="realbox@catch.example.net")
    personal = person(make_directory_user, "pat")
    Domain.objects.create(name="catch.example.net", catchall_destinations="owen@example.org,ops@example.org")
    Domain.objects.create(name="pat.example.net", is_alias_domain=True, catchall_owner=personal)

    maps = rendered()

    assert "@catch.example.net owen@example.org, ops@example.org\n" in maps["virtual"]
    assert f"{mailbox.mail} {mailbox.mail}\n" in maps["virtual"]
    assert "@pat.example.net pat@example.org\n" in maps["virtual"]
    assert "realbox@catch.example.net catch.example.net/realbox/\n" in maps["mailboxes"]
    assert "catch.example.net OK\n" in maps["mailbox_domains"]
    assert "pat.example.net OK\n" in maps["alias_domains"]
    assert "pat.example.net" not in maps["mailbox_domains"]


def test_unsafe_rows_never_reach_a_map_line(
    owner: User, alias_domain: Domain, make_directory_user: Callable[..., DirectoryUser]
) -> None:
    make_alias(owner, "bad\nkey", alias_domain)
    make_alias(owner, "bad key", alias_domain)
    make_alias(owner, "fine", alias_domain)
    # The full read joins a group's local parts with newlines: a newline inside one must not
    # split it into two addresses, live or refused.
    make_alias(owner, "off\nline", alias_domain, enabled=False)
    make_alias(owner, "old\nie", alias_domain, expires_at=timezone.now() - timedelta(days=1))
    make_alias(owner, "leaked", alias_domain, enabled=False)
    # An empty local part would make a key for the whole domain: a catch-all, or a refusal of
    # every address in it.
    make_alias(owner, "", alias_domain, enabled=False)
    make_alias(owner, "", Domain.objects.create(name="other.example.org", is_alias_domain=True))
    # An owner address that could break a line (from a directory that let it through): the
    # owner counts as having no mailbox, so the alias is refused.
    make_alias(person(make_directory_user, "spaced", "two words@example.org"), "spacedsite", alias_domain)

    maps = rendered()

    assert maps["virtual"] == "fine@alias.example.org owen@example.org\n"
    assert maps["recipient_access"] == (
        "leaked@alias.example.org 550 5.1.1 This address is disabled\n"
        "spacedsite@alias.example.org 550 5.1.1 This address is disabled\n"
    )


def test_rendering_twice_gives_the_same_bytes(owner: User, alias_domain: Domain) -> None:
    for n in range(30):
        make_alias(owner, f"site{n}", alias_domain)

    assert rendered() == rendered()


def test_publication_makes_new_alias_answer_postmap_lookups(map_dir: Path, owner: User, alias_domain: Domain) -> None:
    make_alias(owner, "newsletter", alias_domain)
    publication.request_publication("test")

    outcome = publication.publish(coalesce=False)

    assert outcome.status == "published"
    assert lookup("virtual", "newsletter@alias.example.org") == "owen@example.org"
    state = MapPublication.objects.get(host=settings.MAIL_HOST)
    assert state.published_generation == MapGeneration.objects.get().requested
    assert state.line_counts["virtual"] == 1
    assert not list(map_dir.glob(".*"))  # no temporary files left behind


def test_only_changed_maps_are_rewritten(map_dir: Path, owner: User, alias_domain: Domain) -> None:
    publication.publish(force=True, coalesce=False)
    before = {p.name: p.stat().st_mtime_ns for p in map_dir.iterdir()}
    make_alias(owner, "another", alias_domain)
    publication.request_publication("test")

    outcome = publication.publish(coalesce=False)

    after = {p.name: p.stat().st_mtime_ns for p in map_dir.iterdir()}
    # A new alias is a route and an address its owner may send as; no other table changes.
    assert sorted(outcome.changed) == ["sender_login", "virtual"]
    suffix = SUFFIXES[settings.POSTFIX_MAP_TYPE]
    changed = [name for name in sorted(after) if after[name] != before.get(name)]
    assert changed == ["sender_login", f"sender_login{suffix}", "virtual", f"virtual{suffix}"]


def test_incremental_update_removes_and_adds_keys(map_dir: Path, owner: User, alias_domain: Domain) -> None:
    aliases = [make_alias(owner, f"shop{n}", alias_domain) for n in range(50)]
    publication.publish(force=True, coalesce=False)
    aliases[0].enabled = False
    aliases[0].save()
    aliases[1].delete()
    make_alias(owner, "fresh", alias_domain)
    publication.request_publication("test")

    publication.publish(coalesce=False)

    assert lookup("virtual", "shop0@alias.example.org") is None
    assert lookup("virtual", "shop1@alias.example.org") is None
    assert lookup("virtual", "fresh@alias.example.org") == "owen@example.org"
    assert lookup("virtual", "shop2@alias.example.org") == "owen@example.org"
    assert lookup("recipient_access", "shop0@alias.example.org") == "550 5.1.1 This address is disabled"


def test_nothing_pending_means_nothing_written(map_dir: Path, owner: User, alias_domain: Domain) -> None:
    publication.publish(force=True, coalesce=False)

    assert publication.publish(coalesce=False).status == "nothing to do"


def test_failing_postmap_keeps_previous_tables_and_records_the_error(
    map_dir: Path, owner: User, alias_domain: Domain, tmp_path: Path
) -> None:
    make_alias(owner, "before", alias_domain)
    publication.publish(force=True, coalesce=False)
    before = {p.name: p.read_bytes() for p in map_dir.iterdir()}
    failing = tmp_path / "postmap"
    failing.write_text("#!/bin/sh\necho 'postmap: fatal: disk full' >&2\nexit 1\n")
    failing.chmod(0o755)
    make_alias(owner, "after", alias_domain, enabled=False)
    publication.request_publication("test")

    with override_settings(POSTMAP_COMMAND=str(failing), MAP_INCREMENTAL_MAX_KEYS=0):
        outcome = publication.publish(coalesce=False)

    assert outcome.status == "failed"
    assert {p.name: p.read_bytes() for p in map_dir.iterdir()} == before
    assert lookup("virtual", "before@alias.example.org") == "owen@example.org"
    state = MapPublication.objects.get(host=settings.MAIL_HOST)
    assert "disk full" in state.last_error
    # Fixed: the next attempt publishes without anyone requesting it again.
    assert publication.publish(coalesce=False).status == "published"
    assert lookup("recipient_access", "after@alias.example.org") == "550 5.1.1 This address is disabled"
    assert MapPublication.objects.get(host=settings.MAIL_HOST).last_error == ""


def test_a_table_that_reads_back_wrong_is_not_put_in_place(
    map_dir: Path, owner: User, alias_domain: Domain, tmp_path: Path
) -> None:
    publication.publish(force=True, coalesce=False)
    before = {p.name: p.read_bytes() for p in map_dir.iterdir()}
    # A postmap that "succeeds" but builds an empty table, from its source file or from the
    # lines fed on its input (postmap -i): verification must catch it.
    lying = tmp_path / "postmap"
    real = settings.POSTMAP_COMMAND
    lying.write_text(
        "#!/bin/sh\n"
        # -q as a word of its own: a configuration path may hold "-q" (a state directory
        # named test-q…), which made this script exec the real postmap for every call.
        f'case " $* " in *" -q "*) exec {real} "$@";; esac\n'
        'for last; do :; done\n: > "${last#*:}"\n'
        f'exec {real} "$@" < /dev/null\n'
    )
    lying.chmod(0o755)
    make_alias(owner, "checked", alias_domain)
    publication.request_publication("test")

    with override_settings(POSTMAP_COMMAND=str(lying), MAP_INCREMENTAL_MAX_KEYS=0):
        outcome = publication.publish(coalesce=False)

    assert outcome.status == "failed"
    assert "verification" in outcome.error
    assert {p.name: p.read_bytes() for p in map_dir.iterdir()} == before


def test_expired_alias_is_refused_by_the_next_reconcile(map_dir: Path, owner: User, alias_domain: Domain) -> None:
    alias = make_alias(owner, "shortlived", alias_domain, expires_at=timezone.now() + timedelta(hours=2))
    publication.publish(force=True, coalesce=False)
    assert lookup("virtual", "shortlived@alias.example.org") == "owen@example.org"
    # The expiry passes (moved into the past without requesting a publication).
    MapPublication.objects.update(last_success_at=timezone.now() - timedelta(hours=1))
    Alias.objects.filter(pk=alias.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert publication.publish(coalesce=False, full=True).status == "published"
    assert lookup("virtual", "shortlived@alias.example.org") is None
    assert lookup("recipient_access", "shortlived@alias.example.org") == "550 5.1.1 This address has expired"


def test_publish_maps_command_dry_run_prints_a_diff_and_changes_nothing(
    map_dir: Path, owner: User, alias_domain: Domain
) -> None:
    call_command("publish_maps", stdout=StringIO())
    before = {p.name: p.read_bytes() for p in map_dir.iterdir()}
    make_alias(owner, "drydiff", alias_domain)
    out = StringIO()

    call_command("publish_maps", "--dry-run", stdout=out)

    assert "+drydiff@alias.example.org owen@example.org" in out.getvalue()
    assert {p.name: p.read_bytes() for p in map_dir.iterdir()} == before


def test_publish_maps_command_publishes(map_dir: Path, owner: User, alias_domain: Domain) -> None:
    make_alias(owner, "bycommand", alias_domain)
    out = StringIO()

    call_command("publish_maps", stdout=out)

    assert "changed maps:" in out.getvalue() and "virtual" in out.getvalue()
    assert lookup("virtual", "bycommand@alias.example.org") == "owen@example.org"
    assert "up to date" in _dry_run()


def _dry_run() -> str:
    out = StringIO()
    call_command("publish_maps", "--dry-run", stdout=out)
    return out.getvalue()


def test_publish_maps_command_reports_failure(map_dir: Path, owner: User, alias_domain: Domain) -> None:
    make_alias(owner, "x1", alias_domain)
    with override_settings(POSTMAP_COMMAND="/bin/false", MAP_INCREMENTAL_MAX_KEYS=0):
        with pytest.raises(CommandError, match="previous maps stay in force"):
            call_command("publish_maps", stdout=StringIO())


def test_postfix_config_prints_lines_for_the_current_settings(map_dir: Path) -> None:
    out = StringIO()

    call_command("postfix_config", stdout=out)

    text = out.getvalue()
    assert f"virtual_alias_maps = {settings.POSTFIX_MAP_TYPE}:{map_dir}/virtual" in text
    assert f"virtual_alias_domains = {settings.POSTFIX_MAP_TYPE}:{map_dir}/alias_domains" in text
    assert f"transport_maps = {settings.POSTFIX_MAP_TYPE}:{map_dir}/transport" in text
    restrictions = text.split("smtpd_recipient_restrictions =", 1)[1]
    assert restrictions.index(
        f"check_recipient_access {settings.POSTFIX_MAP_TYPE}:{map_dir}/recipient_access"
    ) < restrictions.index("permit_mynetworks")
    assert f"check_sender_access {settings.POSTFIX_MAP_TYPE}:{map_dir}/sender_access" in text
    assert "sender_block.cf" in text and "lmtp" in text


def test_admin_page_shows_generation_line_counts_and_last_error(
    sign_in: Callable[..., object], map_dir: Path, owner: User, alias_domain: Domain
) -> None:
    make_alias(owner, "counted", alias_domain)
    publication.request_publication("test")
    publication.publish(coalesce=False)
    publication.request_publication("test")
    with override_settings(POSTMAP_COMMAND="/bin/false", MAP_INCREMENTAL_MAX_KEYS=0):
        make_alias(owner, "blocked", alias_domain)
        publication.publish(coalesce=False)
    admin = sign_in("admin")

    page = admin.get("/aliases/publication/").content.decode()  # type: ignore[attr-defined]

    assert "Generation requested: <strong>2</strong>" in page
    assert "Generation published: <strong>1</strong>" in page
    assert f"postmap {settings.POSTFIX_MAP_TYPE}:" in page and "failed" in page
    assert f"<code>{map_dir}/virtual</code></td><td>1</td>" in page


def test_publication_page_is_for_admins_only(sign_in: Callable[..., object]) -> None:
    for role in ("end user", "helpdesk"):
        client = sign_in(role)
        assert client.get("/aliases/publication/").status_code == 403  # type: ignore[attr-defined]
        assert client.post("/aliases/publication/publish/").status_code == 403  # type: ignore[attr-defined]


def test_publish_now_button_records_the_need_to_publish(sign_in: Callable[..., object]) -> None:
    admin = sign_in("admin")

    response = admin.post("/aliases/publication/publish/")  # type: ignore[attr-defined]

    assert response.status_code == 302
    assert MapGeneration.objects.get().requested == 1


@pytest.mark.parametrize(
    "local_part", ["evil\nkey", "two words", "hash#tag", "a,b", "nul\x00byte", "x" * 300, "postmaster"]
)
def test_refused_local_part_leaves_map_files_byte_for_byte_unchanged(
    sign_in: Callable[..., object], map_dir: Path, alias_domain: Domain, local_part: str
) -> None:
    client = sign_in("end user")
    publication.publish(force=True, coalesce=False)
    before = {p.name: p.read_bytes() for p in map_dir.iterdir()}
    generation = publication.requested_generation()

    response = client.post(  # type: ignore[attr-defined]
        "/aliases/new/custom/", {"local_part": local_part, "domain": alias_domain.pk, "label": ""}
    )

    assert response.status_code == 200 and b'class="error' in response.content
    assert not Alias.objects.exists()
    assert publication.requested_generation() == generation
    assert publication.publish(force=True, coalesce=False).status == "unchanged"
    assert {p.name: p.read_bytes() for p in map_dir.iterdir()} == before


def test_accepted_local_part_is_published_by_the_same_path(
    sign_in: Callable[..., object], map_dir: Path, alias_domain: Domain
) -> None:
    client = sign_in("end user")
    publication.publish(force=True, coalesce=False)

    response = client.post(  # type: ignore[attr-defined]
        "/aliases/new/custom/", {"local_part": "fine-name", "domain": alias_domain.pk, "label": ""}
    )

    assert response.status_code == 302
    assert publication.publish(coalesce=False).status == "published"
    assert lookup("virtual", "fine-name@alias.example.org") == client.directory_user.mail  # type: ignore[attr-defined]


def test_publication_queues_a_wake_up_at_the_next_expiry(map_dir: Path, owner: User, alias_domain: Domain) -> None:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue = publication.queue_name(settings.MAIL_HOST)
    broker.delete(queue, publication.queued_mark(settings.MAIL_HOST))
    expires_at = (timezone.now() + timedelta(minutes=10)).replace(microsecond=0)
    make_alias(owner, "tenminutes", alias_domain, expires_at=expires_at)

    publication.publish(force=True, coalesce=False)
    publication.publish(force=True, coalesce=False)  # a second publication queues no second wake-up

    messages = [json.loads(raw) for raw in broker.lrange(queue, 0, -1)]
    broker.delete(queue)
    assert [m["headers"]["task"] for m in messages] == ["postfix.tasks.publish_maps"]
    assert messages[0]["headers"]["eta"] == expires_at.isoformat()


def test_each_mail_host_publishes_its_own_directory_and_keeps_its_own_state(
    tmp_path: Path, owner: User, alias_domain: Domain
) -> None:
    make_alias(owner, "everywhere", alias_domain)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("maps.mx1", "maps.mx2", publication.queued_mark("mx1"), publication.queued_mark("mx2"))
    with override_settings(MAP_HOSTS=["mx1", "mx2"]):
        publication.enqueue_publication()
    assert (broker.llen("maps.mx1"), broker.llen("maps.mx2")) == (1, 1)
    broker.delete("maps.mx1", "maps.mx2", publication.queued_mark("mx1"), publication.queued_mark("mx2"))
    dirs = {host: tmp_path / host / "maps" for host in ("mx1", "mx2")}
    for path in dirs.values():
        path.mkdir(parents=True)

    with override_settings(MAIL_HOST="mx1", POSTFIX_MAP_DIR=dirs["mx1"], POSTFIX_RELOAD_COMMAND="/bin/true"):
        assert publication.publish(force=True, coalesce=False).status == "published"
    with override_settings(MAIL_HOST="mx2", POSTFIX_MAP_DIR=dirs["mx2"], POSTMAP_COMMAND="/bin/false"):
        assert publication.publish(force=True, coalesce=False).status == "failed"

    assert lookup("virtual", "everywhere@alias.example.org", dirs["mx1"]) == "owen@example.org"
    assert not (dirs["mx2"] / f"virtual{SUFFIXES[settings.POSTFIX_MAP_TYPE]}").exists()
    states = {s.host: s for s in MapPublication.objects.all()}
    assert states["mx1"].last_error == "" and states["mx1"].last_success_at is not None
    assert states["mx2"].last_error and states["mx2"].last_success_at is None


def test_changes_made_before_a_queued_run_begins_queue_no_run_of_their_own(
    map_dir: Path, owner: User, alias_domain: Domain
) -> None:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue, mark = publication.queue_name(settings.MAIL_HOST), publication.queued_mark(settings.MAIL_HOST)
    broker.delete(queue, mark)
    publication.publish(force=True, coalesce=False)
    addresses = [f"burst{n}@{alias_domain.name}" for n in range(3)]
    for address in addresses:
        make_alias(owner, address.split("@")[0], alias_domain)
        publication.request_publication("test", keys=[address])
        publication.enqueue_publication()  # what each change's commit does
    assert broker.llen(queue) == 1
    # Lost with its run (a worker killed before it began), the mark holds changes back no longer
    # than the periodic reconcile would.
    assert 0 < broker.ttl(mark) <= settings.MAP_RECONCILE_INTERVAL

    # The run begins: it publishes every change committed before, and a change from now on
    # queues a run of its own (this one may have read too early to see it).
    assert publication.publish_queued().status == "published"
    assert [lookup("virtual", address, map_dir) for address in addresses] == [owner.email] * 3
    publication.enqueue_publication()
    assert broker.llen(queue) == 2
    broker.delete(queue, mark)


def test_without_the_mark_every_change_still_queues_its_run(free_redis_url: str) -> None:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue = publication.queue_name(settings.MAIL_HOST)
    broker.delete(queue, publication.queued_mark(settings.MAIL_HOST))
    with override_settings(REDIS_URL=free_redis_url):  # where the marks are kept, nobody answers
        publication.enqueue_publication()
        publication.enqueue_publication()
    assert broker.llen(queue) == 2
    broker.delete(queue)


def test_incremental_render_matches_a_full_render_after_every_kind_of_change(
    map_dir: Path, owner: User, alias_domain: Domain
) -> None:
    aliases = [make_alias(owner, f"inc{n}", alias_domain) for n in range(30)]
    later = make_alias(owner, "soonexpired", alias_domain, expires_at=timezone.now() + timedelta(seconds=1))
    publication.publish(force=True, coalesce=False)
    aliases[0].enabled = False
    aliases[0].save()
    aliases[1].delete()
    aliases[2].label = "only a note"
    aliases[2].save()
    make_alias(owner, "added", alias_domain)
    Alias.objects.filter(pk=later.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    publication.request_publication("test")

    assert publication.publish(coalesce=False).status == "published"

    tables = live()
    assert tables == publication.render_tables()
    virtual = "\n".join(tables["virtual"] or [])
    assert "inc0@" not in virtual and "inc1@" not in virtual and "added@" in virtual
    assert lookup("virtual", "soonexpired@alias.example.org") is None


def test_a_render_of_a_few_keys_reads_a_few_people_and_gives_what_the_whole_directory_gives(
    make_directory_user: Callable[..., DirectoryUser], owner: User, alias_domain: Domain
) -> None:
    other, catcher, suspended = (person(make_directory_user, uid) for uid in ("otto", "cathy", "sully"))
    bystanders = [person(make_directory_user, f"by{n}") for n in range(5)]
    ghost = User.objects.create(username="ghost", email="ghost@example.org")  # not in the directory
    catchall = Domain.objects.create(name="catch.example.org", catchall_owner=catcher)
    aliases = [
        make_alias(owner, "shop", alias_domain),
        make_alias(other, "off", alias_domain, enabled=False),
        make_alias(ghost, "orphan", alias_domain),
        make_alias(suspended, "sent", alias_domain),
        make_alias(bystanders[0], "news", catchall),
    ]
    SenderSuspension.objects.create(uid=suspended.username, mail=suspended.email, reason="test")
    keys = frozenset(
        [*(alias.address for alias in aliases), owner.email, suspended.email, catcher.email, "nobody@catch.example.org"]
    )
    snapshot = features.Snapshot(timezone.now(), features.directory_mailboxes(keys), keys)

    few = publication.render_tables(snapshot)

    assert len(snapshot.mailboxes) < len(features.directory_mailboxes())
    assert few == publication.render_tables(features.Snapshot(snapshot.now, features.directory_mailboxes(), keys))
    assert few["recipient_access"] == [
        "off@alias.example.org 550 5.1.1 This address is disabled",
        "orphan@alias.example.org 550 5.1.1 This address is disabled",
    ]
    assert f"shop@alias.example.org {owner.email}" in few["virtual"]


def test_a_mass_change_is_read_afresh_and_published_whole(map_dir: Path, owner: User, alias_domain: Domain) -> None:
    publication.publish(force=True, coalesce=False)
    for n in range(12):
        make_alias(owner, f"mass{n}", alias_domain)
        publication.request_publication("test", keys=[f"mass{n}@alias.example.org"])

    with override_settings(MAP_INCREMENTAL_MAX_KEYS=5):
        assert publication.publish(coalesce=False).status == "published"

    assert (map_dir / "virtual").read_text() == rendered()["virtual"]  # rebuilt whole, with its source
    assert lookup("virtual", "mass11@alias.example.org") == "owen@example.org"


def test_service_edits_are_seen_by_the_next_incremental_render(
    map_dir: Path, owner: User, alias_domain: Domain, rf: RequestFactory
) -> None:
    """The incremental render finds changed rows by updated_at: an edit that did not touch it
    would reach Postfix only at the next full re-read (MAP_FULL_RECONCILE_INTERVAL)."""
    switched = make_alias(owner, "switched", alias_domain)
    revived = make_alias(owner, "revived", alias_domain, enabled=False)
    extended = make_alias(owner, "extended", alias_domain, expires_at=timezone.now() - timedelta(days=1))
    dated = make_alias(owner, "dated", alias_domain)
    publication.publish(force=True, coalesce=False)
    # Rows saved long ago: only a fresh updated_at puts them in the next incremental render.
    long_ago = timezone.now() - timedelta(days=30)
    Alias.objects.update(created_at=long_ago, updated_at=long_ago)
    request = rf.post("/")
    request.user = owner
    later = timezone.now() + timedelta(days=7)

    services.set_alias_enabled(request, Alias.objects.get(pk=switched.pk), False)
    services.set_alias_enabled(request, Alias.objects.get(pk=revived.pk), True)
    services.update_alias(request, Alias.objects.get(pk=extended.pk), label="", expires_at=None, vacation_replies=False)
    services.update_alias(request, Alias.objects.get(pk=dated.pk), label="", expires_at=later, vacation_replies=True)
    with override_settings(MAP_FULL_RECONCILE_INTERVAL=3600):
        assert publication.publish(coalesce=False).status == "published"

    assert lookup("virtual", "switched@alias.example.org") is None
    assert lookup("recipient_access", "switched@alias.example.org") == "550 5.1.1 This address is disabled"
    assert lookup("virtual", "revived@alias.example.org") == "owen@example.org"
    assert lookup("recipient_access", "revived@alias.example.org") is None
    assert lookup("virtual", "extended@alias.example.org") == "owen@example.org"
    assert lookup("recipient_access", "extended@alias.example.org") is None
    assert set(Alias.objects.filter(updated_at__gt=long_ago).values_list("local_part", flat=True)) == {
        "switched",
        "revived",
        "extended",
        "dated",
    }


STALE = [
    ".virtual.0123abcd.tmp",
    ".virtual.0123abcd.tmp.db",
    ".virtual.0123abcd.tmp.lmdb",
    "__db..virtual.0123abcd.tmp.db",
    ".recipient_access.89abcdef.tmp.cdb",
]
UNRELATED = ["notes.txt", ".virtual.tmp", "virtual.bak"]


def test_temporaries_left_by_a_killed_publication_are_swept_by_the_next(
    map_dir: Path, owner: User, alias_domain: Domain
) -> None:
    for n in range(3):
        make_alias(owner, f"swept{n}", alias_domain)
    for name in STALE + UNRELATED:
        (map_dir / name).write_text("left behind\n")

    with publication.publication_lock():  # another worker publishing: nothing is touched
        assert publication.publish(force=True, coalesce=False).status == "busy"
    assert all((map_dir / name).exists() for name in STALE)

    assert publication.publish(force=True, coalesce=False).status == "published"

    assert not any((map_dir / name).exists() for name in STALE)
    assert all((map_dir / name).read_text() == "left behind\n" for name in UNRELATED)
    assert lookup("virtual", "swept2@alias.example.org") == "owen@example.org"


# --- the small maps: built by one postmap run, read back whole -----------------------------------
