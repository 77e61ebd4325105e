"""The postfix app: the one key-safety rule over every table, the generator behind the private
Postfix, and publication with every table type (lmdb, cdb, hash), torn reads included."""

import random
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings

from accounts.directory import DirectoryUser
from aliases.models import Alias, Domain
from postfix import config, postmap, publication
from postfix.features import Entries, Entry
from postfix.postmap import SUFFIXES
from postfix.render import WHITESPACE, render
from tests.test_publication import lookup, person

pytestmark = pytest.mark.django_db

HOSTILE_KEYS = [
    "evil\nkey@example.org",
    "two words@example.org",
    "@example.org",
    "nolocal@",
    "a@b@example.org",
    "bell\x07@example.org",
    "tab\t@example.org",
    "sep\u2028@example.org",
    "hash#tag@example.org",
    "comma,x@example.org",
    "",
    "x" * 400,
]
HOSTILE_VALUES = ["line\nbreak", "nul\x00", "", " leading", "trailing ", "esc\x1b[31m", "sep\u2028x"]


@pytest.mark.parametrize("table", settings.POSTFIX_MAPS)
def test_no_hostile_key_or_value_reaches_any_table(table: str) -> None:
    entries = [Entry(table, key, "OK") for key in HOSTILE_KEYS]
    entries += [Entry(table, f"value{n}@example.org", value) for n, value in enumerate(HOSTILE_VALUES)]
    entries.append(Entry(table, "fine@example.org", "fine@example.org"))
    # The same as one block of columns (a feature's bulk), and a catch-all's form for each key.
    block = Entries(table, [entry.key for entry in entries], [entry.value for entry in entries])
    domain_wide = [entry._replace(domain_wide=True) for entry in entries[: len(HOSTILE_KEYS)]]

    assert render(entries, settings.POSTFIX_MAPS)[table] == ["fine@example.org fine@example.org"]
    assert render([block], settings.POSTFIX_MAPS)[table] == ["fine@example.org fine@example.org"]
    assert render(domain_wide, settings.POSTFIX_MAPS)[table] == ["@example.org OK"]


def test_a_virtual_value_may_list_any_number_of_targets_each_a_token() -> None:
    targets = ", ".join(f"person{n}@example.org" for n in range(100))  # about 2,000 characters
    entries = [
        Entry("virtual", "@example.org", targets, domain_wide=True),
        Entry("virtual", "long@example.org", f"{'x' * 321}@example.org"),  # one target too long
    ]

    assert render(entries, settings.POSTFIX_MAPS)["virtual"] == [f"@example.org {targets}"]


def test_the_rule_spells_out_exactly_the_characters_python_calls_whitespace() -> None:
    every = "".join(map(chr, range(sys.maxunicode + 1)))

    spelled = re.findall(rf"[{WHITESPACE}]", every)

    assert spelled == [character for character in every if character.isspace()]


def test_only_a_catch_all_entry_may_name_a_whole_domain() -> None:
    entries = [
        Entry("virtual", "@example.org", "catch@example.org", domain_wide=True),
        Entry("virtual", "@example.org", "sneaky@example.org"),
        Entry("recipient_access", "@example.org", "550 refused"),
        Entry("virtual", "x@example.org", "y@example.org", domain_wide=True),
    ]

    tables = render(entries, settings.POSTFIX_MAPS)

    assert tables["virtual"] == ["@example.org catch@example.org"]
    assert tables["recipient_access"] == []


def test_virtual_joins_targets_and_other_tables_keep_the_first_value() -> None:
    entries = [
        Entry("virtual", "Box@Example.org", "box@example.org"),
        Entry("virtual", "box@example.org", "box@example.org, copy@handoff.example"),
        Entry("recipient_access", "gone@example.org", "550 deleted"),
        Entry("recipient_access", "gone@example.org", "550 disabled"),
    ]

    tables = render(entries, settings.POSTFIX_MAPS)

    assert tables["virtual"] == ["box@example.org box@example.org, copy@handoff.example"]
    assert tables["recipient_access"] == ["gone@example.org 550 deleted"]


def _one_by_one(entries: list[Entry | Entries], keys: frozenset[str] | None) -> dict[str, list[str]]:
    """What a render means, entry by entry: an entry is kept when it renders alone, virtual
    joins every target given for a key (each once), another table keeps the first value."""
    merged: dict[str, dict[str, list[str]]] = {table: {} for table in settings.POSTFIX_MAPS}
    for item in entries:
        columns = zip(item.keys, item.values, strict=True) if isinstance(item, Entries) else ()
        singles = [Entry(item.table, key, value) for key, value in columns] if columns else [item]
        for entry in singles:
            key = entry.key.lower()
            if (keys is None or key in keys) and render([entry], settings.POSTFIX_MAPS)[entry.table]:
                values = merged[entry.table].setdefault(key, [])
                if entry.table == "virtual":
                    values.extend(target for target in entry.value.split(", ") if target not in values)
                elif not values:
                    values.append(entry.value)
    return {
        table: sorted(f"{key} {', '.join(values)}" for key, values in found.items()) for table, found in merged.items()
    }


def _random_entries(rng: random.Random) -> list[Entry | Entries]:
    def key() -> str:
        if rng.random() < 0.05:
            return rng.choice(HOSTILE_KEYS)
        return f"{rng.choice(['a', 'A', 'b'])}{rng.randrange(30)}@{rng.choice(['example.org', 'Example.ORG'])}"

    def value() -> str:
        targets = ["x@example.org", "y@example.org", "x@example.org, y@example.org", "y@example.org, y@example.org"]
        return rng.choice(HOSTILE_VALUES) if rng.random() < 0.05 else rng.choice(targets)

    def singles() -> list[Entry | Entries]:
        tables = ["virtual", "sender_login", "recipient_access"]
        found: list[Entry | Entries] = [Entry(rng.choice(tables), key(), value()) for _ in range(rng.randrange(8))]
        if rng.random() < 0.3:
            found.append(
                Entry("virtual", rng.choice(["@example.org", "@Example.org", "a1@example.org"]), value(), True)
            )
        return found

    # Like the alias feature's bulk: one list of addresses shared by virtual and sender_login,
    # half the time without a repeated key or a list of targets (as aliases are).
    if rng.random() < 0.5:
        addresses = [key() for _ in range(rng.randrange(40))]
        targets = [value() for _ in addresses]
    else:
        addresses = [f"{rng.choice('aA')}{n}@example.org" for n in rng.sample(range(30), rng.randrange(30))]
        targets = [rng.choice(["x@example.org", "y@example.org"]) for _ in addresses]
    shared: list[Entry | Entries] = [
        Entries("virtual", addresses, targets),
        Entries("sender_login", addresses, [value() for _ in addresses]),
    ]
    others = [key() for _ in range(rng.randrange(20))]
    return [*singles(), *shared, Entries("recipient_access", others, [value() for _ in others]), *singles()]


def test_the_render_of_random_columns_means_what_its_entries_mean_one_by_one() -> None:
    """Checks the sharing of a column between tables, the merge and the sort against the
    meaning of each entry alone: duplicate and mixed-case keys, unsafe ones, catch-alls,
    target lists, in a full and in a keyed render."""
    for seed in range(400):
        rng = random.Random(seed)
        entries = _random_entries(rng)
        every = [entry.key.lower() for entry in entries if isinstance(entry, Entry)]
        every += [key.lower() for entry in entries if isinstance(entry, Entries) for key in entry.keys]
        keys = frozenset(rng.sample(every, len(every) // 2)) if rng.random() < 0.3 else None

        assert render(entries, settings.POSTFIX_MAPS, keys) == _one_by_one(entries, keys), seed


def test_the_private_postfix_runs_the_generated_configuration() -> None:
    ctx = config.context(services=frozenset())
    main_cf = (Path(settings.POSTFIX_CONFIG_DIR) / "main.cf").read_text()
    master_cf = (Path(settings.POSTFIX_CONFIG_DIR) / "master.cf").read_text()

    assert main_cf.endswith("\n".join(config.main_cf(ctx)) + "\n")
    assert master_cf.endswith("\n".join(config.master_cf(ctx)) + "\n")
    for name in config.cf_files(ctx):
        assert (Path(settings.POSTFIX_CONFIG_DIR) / name).exists()


def test_a_policy_item_from_another_feature_lands_in_its_list_by_position() -> None:
    ctx = config.context()
    items = [
        *config.BASE_RESTRICTIONS,
        config.Restriction("smtpd_recipient_restrictions", "check_policy_service inet:127.0.0.1:1", 80),
        config.Restriction("smtpd_recipient_restrictions", f"check_recipient_access {ctx.table('x')}", 10),
    ]

    lines = config.restriction_lines(items)

    assert lines[0] == "smtpd_recipient_restrictions ="
    assert (
        lines[1].startswith("    check_recipient_access") and lines[-1] == "    check_policy_service inet:127.0.0.1:1"
    )


@pytest.fixture(params=["lmdb", "cdb", "hash"])
def typed_map_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "maps"
    directory.mkdir()
    with override_settings(
        POSTFIX_MAP_DIR=directory, POSTFIX_RELOAD_COMMAND="/bin/true", POSTFIX_MAP_TYPE=request.param
    ):
        yield directory


@pytest.fixture
def owner(make_directory_user: Callable[..., DirectoryUser]) -> User:
    return person(make_directory_user, "tara")


def _toggle(alias: Alias, enabled: bool) -> None:
    Alias.objects.filter(pk=alias.pk).update(enabled=enabled)
    publication.request_publication("test", keys=[alias.address])


def test_every_table_type_publishes_keyed_changes_in_the_right_order(typed_map_dir: Path, owner: User) -> None:
    domain = Domain.objects.create(name="typed.example.org", catchall_destinations="catch@example.org")
    alias = Alias.objects.create(owner=owner, local_part="shop", domain=domain)
    assert publication.publish(force=True, coalesce=False).status == "published"
    assert (typed_map_dir / f"virtual{SUFFIXES[settings.POSTFIX_MAP_TYPE]}").exists()
    assert lookup("virtual", "shop@typed.example.org") == "tara@example.org"

    _toggle(alias, False)
    assert publication.publish(coalesce=False).status == "published"

    assert lookup("virtual", "shop@typed.example.org") is None
    assert lookup("recipient_access", "shop@typed.example.org") == "550 5.1.1 This address is disabled"
    assert lookup("virtual", "@typed.example.org") == "catch@example.org"  # the catch-all it must not reach
    assert publication.live_lines("virtual") == publication.render_tables()["virtual"]


def test_readers_never_see_a_missing_or_wrong_answer_during_a_hundred_publications(
    typed_map_dir: Path, owner: User
) -> None:
    domain = Domain.objects.create(name="probe.example.org", is_alias_domain=True)
    steady = Alias.objects.create(owner=owner, local_part="steady", domain=domain)
    flipping = Alias.objects.create(owner=owner, local_part="flipping", domain=domain)
    publication.publish(force=True, coalesce=False)
    table_type = settings.POSTFIX_MAP_TYPE
    argv = [settings.POSTMAP_COMMAND, "-c", str(settings.POSTFIX_CONFIG_DIR), "-q", "-"]
    keys = f"{steady.address}\n{flipping.address}\n"
    wrong: list[str] = []
    reads = 0
    done = threading.Event()

    def probe() -> None:
        nonlocal reads
        while not done.is_set():
            answer = subprocess.run(
                [*argv, f"{table_type}:{typed_map_dir / 'virtual'}"], input=keys, capture_output=True, text=True
            )
            found = dict(line.split("\t", 1) for line in answer.stdout.splitlines())
            if found.get(steady.address) != "tara@example.org" or found.get(flipping.address) not in (
                None,
                "tara@example.org",
            ):
                wrong.append(answer.stdout + answer.stderr)
            reads += 1

    reader = threading.Thread(target=probe)
    reader.start()
    try:
        for n in range(100):
            _toggle(flipping, n % 2 == 1)
            assert publication.publish(coalesce=False).status == "published"
    finally:
        done.set()
        reader.join()

    assert reads > 20 and not wrong, wrong[:3]
    assert lookup("virtual", flipping.address) == "tara@example.org"


def test_a_switched_off_alias_never_falls_through_to_the_catch_all_between_two_table_changes(
    typed_map_dir: Path, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After every single change to a live table, keyed or full publication, in both directions:
    the alias is routed by virtual or refused by recipient_access, never left to the catch-all."""
    domain = Domain.objects.create(name="order.example.org", catchall_destinations="catch@example.org")
    alias = Alias.objects.create(owner=owner, local_part="shop", domain=domain)
    assert publication.publish(force=True, coalesce=False).status == "published"
    states: list[tuple[str | None, str | None]] = []

    def look() -> None:
        virtual, refusals = postmap.live("virtual"), postmap.live("recipient_access")
        answers = postmap.query_tables({virtual: [alias.address], refusals: [alias.address]})
        states.append((answers[virtual].found.get(alias.address), answers[refusals].found.get(alias.address)))

    def watched(change: Callable[..., None]) -> Callable[..., None]:
        return lambda *args: (change(*args), look())[0]

    for name in ("put", "delete", "install"):
        monkeypatch.setattr(postmap, name, watched(getattr(postmap, name)))
    for enabled in (False, True, False, True):
        _toggle(alias, enabled)  # a keyed publication
        assert publication.publish(coalesce=False).status == "published"
    for enabled in (False, True, False, True):
        Alias.objects.filter(pk=alias.pk).update(enabled=enabled)
        assert publication.publish(force=True, coalesce=False, full=True).status == "published"

    assert len(states) >= 8 and all(routed or refused for routed, refused in states), states
    assert {routed is None for routed, _ in states} == {True, False}  # it was switched off and on


def _configuration_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_deploy_files_are_what_the_generator_prints_for_their_example_settings() -> None:
    example = {
        "LDAP_URI": "ldap://ldap.example.org:389",
        "LDAP_BASE_DN": "dc=example,dc=org",
        "LDAP_PEOPLE_DN": "ou=people,dc=example,dc=org",
        "LDAP_SENDER_BLOCK_ATTR": "mailSenderBlocked",
        "POSTFIX_LDAP_START_TLS": True,
        "SUSPENSION_REJECT_TEXT": "Sending is suspended for this account; contact abuse@example.org",
        "VACATION_ROUTING_DOMAIN": "autoreply.mailadmin.invalid",
        "VACATION_HANDOFF_PORT": 10027,
        "RESPONDER_HOST": "127.0.0.1",
        "RESPONDER_PORT": 10026,
        "POLICY_HOST": "127.0.0.1",
        "POLICY_PORT": 10040,
        "POLICY_TIMEOUT": 5,
        "POLICY_DEFAULT_ACTION": "DUNNO",
        "MAILLOG_FILE": Path("/var/log/postfix.log"),
        "MAILLOG_POSTLOG": True,
    }
    deploy = Path(settings.BASE_DIR) / "deploy" / "postfix"
    with override_settings(**example):
        ctx = config.context(
            map_dir=Path("/var/lib/mailadmin/maps"),
            config_dir=Path("/etc/postfix"),
            map_type="lmdb",
            ldap_password="CHANGE-ME",
        )
        main_cf, master_cf, files = config.main_cf(ctx), config.master_cf(ctx), config.cf_files(ctx)

    main_parts = ("main.cf.tables", "main.cf.sender-block", "main.cf.out-of-office", "main.cf.policy", "main.cf.trail")
    master_parts = ("master.cf.submission", "master.cf.out-of-office")
    kept_main = [line for name in main_parts for line in _configuration_lines((deploy / name).read_text())]
    kept_master = [line for name in master_parts for line in _configuration_lines((deploy / name).read_text())]
    assert sorted(kept_main) == sorted(_configuration_lines("\n".join(main_cf)))
    assert sorted(kept_master) == sorted(_configuration_lines("\n".join(master_cf)))
    for name, lines in files.items():
        assert _configuration_lines((deploy / name).read_text()) == lines, name


def test_querying_tables_side_by_side_answers_as_one_query_each_and_fails_as_a_postmap_error(
    typed_map_dir: Path,
) -> None:
    sources = {"virtual": "a@x.example b@x.example\n@x.example c@x.example\n", "mailboxes": "b@x.example x/b/\n"}
    built = {name: postmap.live(name) for name in sources}
    postmap.build_all((built[name], text.splitlines(), []) for name, text in sources.items())
    keys = {built["virtual"]: ["a@x.example", "@x.example", "none@x.example"], built["mailboxes"]: ["b@x.example"]}

    answers = postmap.query_tables({**keys, postmap.live("transport"): []})

    assert answers == {table: postmap.query(table, table_keys) for table, table_keys in keys.items()} | {
        postmap.live("transport"): postmap.Lookup({}, frozenset())
    }
    assert answers[built["virtual"]].missing == frozenset({"none@x.example"})
    absent = postmap.Table(typed_map_dir / "absent", settings.POSTFIX_MAP_TYPE)
    with pytest.raises(postmap.PostmapError):  # not "every key missing"
        postmap.query(absent, ["a@x.example"])
    with pytest.raises(postmap.PostmapError):
        postmap.query_tables({**keys, absent: ["a@x.example"]})


def test_tables_built_side_by_side_answer_each_line_and_a_bad_line_fails_them_as_a_postmap_error(
    typed_map_dir: Path,
) -> None:
    large = [f"a{n}@x.example b@x.example" for n in range(25_000)]  # built on its own, written in batches
    assert len(large) > 2 * postmap.WRITE_BATCH and len(large) > postmap.SMALL_SOURCE > 1
    tables = {name: postmap.temporary(name) for name in ("virtual", "mailboxes", "transport")}
    keys = ["a0@x.example", "a9999@x.example", "a10000@x.example", "a24999@x.example", "a25000@x.example"]

    answers = postmap.build_all(
        [
            (tables["virtual"], large, keys),
            (tables["mailboxes"], ["b@x.example x/b/"], ["b@x.example", "c@x.example"]),
            (tables["transport"], [], []),
        ]
    )

    assert answers == {
        tables["virtual"]: postmap.Lookup(dict.fromkeys(keys[:-1], "b@x.example"), frozenset({"a25000@x.example"})),
        tables["mailboxes"]: postmap.Lookup({"b@x.example": "x/b/"}, frozenset({"c@x.example"})),
    }
    assert answers[tables["virtual"]] == postmap.query(tables["virtual"], keys)
    assert tables["virtual"].path.read_text() == "".join(f"{line}\n" for line in large)
    assert tables["transport"].exists()
    for bad in (
        [(postmap.temporary("virtual"), [*large, "no-value"], keys)],
        [(postmap.temporary("mailboxes"), ["x"], [])],
    ):
        with pytest.raises(postmap.PostmapError):
            postmap.build_all(bad)
