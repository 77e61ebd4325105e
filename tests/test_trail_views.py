"""Who sees which part of the delivery trail: a person the mail of their own addresses (mailbox
from the directory, aliases, personal catch-all), nobody else's; helpdesk and admins search all."""

import secrets
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aliases.models import Alias, AliasTombstone, Domain
from trail.models import Delivery, LogPosition

pytestmark = pytest.mark.django_db


def record(recipient: str = "", sender: str = "", original: str = "", **fields: object) -> Delivery:
    fields.setdefault("logged_at", timezone.now())
    fields.setdefault("status", "sent")
    return Delivery.objects.create(
        host="views", recipient=recipient, sender=sender, original_recipient=original, **fields
    )


@pytest.fixture
def people(sign_in):
    owner = sign_in()
    other = sign_in()
    owner_user = User.objects.get(username=owner.directory_user.uid)
    other_user = User.objects.get(username=other.directory_user.uid)
    domain, _ = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})
    tag = secrets.token_hex(3)
    alias = Alias.objects.create(owner=owner_user, local_part=f"shop{tag}", domain=domain, enabled=False)
    AliasTombstone.objects.create(address=f"gone{tag}@{domain.name}", former_owner=owner_user)
    catchall = Domain.objects.create(name=f"catch{tag}.example.org", catchall_owner=owner_user)
    other_alias = Alias.objects.create(owner=other_user, local_part=f"theirs{tag}", domain=domain)
    return {
        "owner": owner,
        "other": other,
        "mail": owner.directory_user.mail,
        "other_mail": other.directory_user.mail,
        "alias": alias.address,
        "tombstone": f"gone{tag}@{domain.name}",
        "catchall": catchall.name,
        "other_alias": other_alias.address,
    }


def shown(client, **query) -> set[int]:
    response = client.get("/trail/", query)
    assert response.status_code == 200
    return {item.pk for item in response.context["page"].object_list}


def test_a_person_sees_mail_of_their_own_addresses_and_nobody_elses(people) -> None:
    through_alias = record(recipient=people["mail"], original=people["alias"]).pk
    refused_alias = record(recipient=people["alias"], status="rejected", reply="550 5.1.1 This address is disabled").pk
    through_catchall = record(recipient=people["mail"], original=f"anything@{people['catchall']}").pk
    own = {
        record(recipient=people["mail"]).pk,
        record(sender=people["mail"], recipient="friend@remote.example").pk,
        record(recipient=people["tombstone"], status="rejected").pk,
        through_alias,
        refused_alias,
        through_catchall,
    }
    theirs = {
        record(recipient=people["other_mail"]).pk,
        record(sender=people["other_mail"], recipient="friend@remote.example").pk,
        record(recipient=people["other_mail"], original=people["other_alias"]).pk,
    }
    lookalike = record(recipient=f"someone@{people['catchall']}.evil.example").pk  # not the catch-all domain

    assert shown(people["owner"]) == own
    assert shown(people["owner"], q=f"anything@{people['catchall']}") == {through_catchall}
    assert shown(people["owner"], q=people["alias"]) == {through_alias, refused_alias}
    assert shown(people["other"]) == theirs
    for pk in own:
        assert people["owner"].get(f"/trail/{pk}/").status_code == 200
    for pk in theirs | {lookalike}:
        assert people["owner"].get(f"/trail/{pk}/").status_code == 404


def test_asking_for_another_persons_address_is_refused_plainly(people) -> None:
    record(recipient=people["other_mail"])
    response = people["owner"].get("/trail/", {"q": people["other_mail"]})

    assert response.status_code == 200
    assert "your own addresses only" in response.content.decode()
    assert list(response.context["page"].object_list) == []


def test_the_record_page_names_the_outcome_and_other_recipients_of_the_message_the_viewer_may_see(people) -> None:
    mine = record(recipient=people["mail"], queue_id="4A1B2C3D4E", reply="delivered to maildir", relay="virtual")
    record(recipient=people["other_mail"], queue_id="4A1B2C3D4E")
    also_mine = record(recipient=people["alias"], queue_id="4A1B2C3D4E", status="bounced")
    record(recipient=people["mail"], queue_id="4A1B2C3D4E", logged_at=timezone.now() - timedelta(days=20))  # id reused

    page = people["owner"].get(f"/trail/{mine.pk}/")

    assert list(page.context["same_message"]) == [also_mine]
    text = page.content.decode()
    assert "delivered to maildir" in text and people["other_mail"] not in text


def test_helpdesk_searches_by_address_queue_id_status_and_time(sign_in) -> None:
    helpdesk = sign_in("helpdesk")
    now = timezone.now()
    old = record(recipient="x@remote.example", status="bounced", logged_at=now - timedelta(days=2))
    new = record(recipient="x@remote.example", status="deferred", queue_id="5B6C7D8E9F")
    record(recipient="y@remote.example")

    assert shown(helpdesk, q="X@Remote.Example") == {old.pk, new.pk}
    assert shown(helpdesk, q="5b6c7d8e9f") == {new.pk}
    assert shown(helpdesk, q="x@remote.example", status="bounced") == {old.pk}
    since = timezone.localtime(now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert shown(helpdesk, q="x@remote.example", since=since) == {new.pk}
    LogPosition.objects.create(
        host="mx9", path="/var/log/postfix.log", device=1, inode=2, offset=3, fingerprint="", fingerprint_length=0
    )
    assert "read up to" in (listing := helpdesk.get("/trail/").content.decode()) and "on mx9" in listing
    page = helpdesk.get(f"/trail/{new.pk}/").content.decode()
    assert 'href="/trail/?q=x%40remote.example"' in page  # the record links to all mail of its addresses
    response = helpdesk.get("/trail/", {"q": "not an address"})
    assert "one mail address" in response.content.decode()


def test_the_trail_page_costs_the_same_queries_for_many_records(sign_in, people) -> None:
    helpdesk = sign_in("helpdesk")
    for client, address in ((helpdesk, "z@remote.example"), (people["owner"], people["mail"])):
        record(recipient=address)
        with CaptureQueriesContext(connection) as few:
            client.get("/trail/")
        Delivery.objects.bulk_create(
            Delivery(logged_at=timezone.now(), host="views", recipient=address, status="sent") for _ in range(120)
        )
        with CaptureQueriesContext(connection) as many:
            client.get("/trail/")
        assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
