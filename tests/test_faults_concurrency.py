"""Requests racing each other: the database, not luck, decides (run on SQLite and, in CI, on
PostgreSQL, where transactions really overlap)."""

import threading
from collections.abc import Callable

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.db import connections
from django.test import RequestFactory

from aliases.models import Alias, Domain
from aliases.services import AliasRefused, create_alias
from audit.models import AuditEvent
from postfix.models import MapGeneration

pytestmark = pytest.mark.django_db(transaction=True)
RACERS = 8
ON_POSTGRESQL = django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
# SQLite lets one writer in at a time (transactions BEGIN IMMEDIATE), so racers queue up; the
# test database's shared in-memory cache reports the queue as "table is locked" instead of
# waiting, so there they take turns. On PostgreSQL (CI runs this file there too) they overlap.
_turns = threading.Lock() if not ON_POSTGRESQL else None


def race(work: Callable[[int], object]) -> list[object]:
    """Run work(n) in RACERS threads released at the same moment; results or exceptions."""
    barrier = threading.Barrier(RACERS)
    results: list[object] = [None] * RACERS

    def run(n: int) -> None:
        try:
            barrier.wait(10)
            if _turns is None:
                results[n] = work(n)
            else:
                with _turns:
                    results[n] = work(n)
        except Exception as exc:  # noqa: BLE001 -- collected and asserted on below
            results[n] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def _request(user: User):
    request = RequestFactory().post("/aliases/new/custom/")
    request.user = user
    return request


def test_people_racing_for_one_address_get_it_once_and_the_others_a_clear_refusal() -> None:
    domain = Domain.objects.create(name="race.example.org", is_alias_domain=True)
    people = [User.objects.create(username=f"racer{n}", email=f"racer{n}@example.org") for n in range(RACERS)]
    generation = MapGeneration.objects.get_or_create(pk=1)[0].requested

    results = race(
        lambda n: create_alias(_request(people[n]), people[n], local_part="prize", domain=domain, kind="custom")
    )

    won = [r for r in results if isinstance(r, Alias)]
    refused = [r for r in results if isinstance(r, AliasRefused)]
    assert (len(won), len(refused)) == (1, RACERS - 1), results
    assert Alias.objects.filter(local_part="prize").count() == 1
    assert AuditEvent.objects.filter(action="alias.create").count() == 1
    assert MapGeneration.objects.get(pk=1).requested == generation + 1


def test_one_person_racing_the_alias_limit_does_not_pass_it(settings) -> None:
    settings.ALIAS_LIMIT_PER_USER = 3
    domain = Domain.objects.create(name="limit.example.org", is_alias_domain=True)
    person = User.objects.create(username="greedy", email="greedy@example.org")
    for n in range(2):
        create_alias(_request(person), person, local_part=f"have{n}", domain=domain, kind="custom")

    results = race(
        lambda n: create_alias(_request(person), person, local_part=f"more{n}", domain=domain, kind="custom")
    )

    assert all(isinstance(r, Alias | AliasRefused) for r in results), results
    assert Alias.objects.filter(owner=person).count() == 3  # the limit, not one more
