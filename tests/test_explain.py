"""Explain an address end to end: tables published by the real publisher, read back with the
real postmap, the directory in the private slapd, Postfix's own answer beside explain's."""

import re
import secrets
from collections.abc import Callable
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accounts import directory, suspension
from activity.models import SenderBlock
from aliases.models import Alias, Domain
from explain import services
from explain.decision import Tables
from explain.forms import NOT_OWN
from outofoffice.models import VacationReply
from postfix import publication
from postfix.features import Snapshot, directory_mailboxes
from postfix.publication import render_tables
from tests.test_postfix_e2e import rcpt_reply
from trail.models import Delivery

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]


def publish() -> None:
    publication.request_publication("test")
    outcome = publication.publish(coalesce=False)
    assert outcome.status in ("published", "unchanged"), outcome.error


def deciding(verdict: services.Verdict) -> list[tuple[str, str | None]]:
    return [(step.where, step.line) for step in verdict.steps if step.decides]


@pytest.fixture
def world(make_directory_user: Callable[..., directory.DirectoryUser]) -> dict:
    tag = secrets.token_hex(3)
    owner = make_directory_user(uid=f"exo{tag}")
    other = make_directory_user(uid=f"exr{tag}")
    owner_user = User.objects.create(username=owner.uid, email=owner.mail)
    catchall = Domain.objects.create(name=f"excatch{tag}.example.org", catchall_destinations=owner.mail)
    alias_domain = Domain.objects.create(name=f"exalias{tag}.example.org", is_alias_domain=True)
    return {
        "tag": tag,
        "owner": owner,
        "other": other,
        "owner_user": owner_user,
        "catchall": catchall,
        "alias_domain": alias_domain,
    }


def test_a_disabled_alias_is_explained_by_its_recipient_access_line_as_postfix_refuses_it(world: dict) -> None:
    alias = Alias.objects.create(
        owner=world["owner_user"], local_part="leaked", domain=world["catchall"], enabled=False
    )
    publish()

    explanation = services.explain(alias.address)

    assert deciding(explanation.to) == [("recipient_access", f"{alias.address} 550 5.1.1 This address is disabled")]
    assert explanation.differences == [] and explanation.note is None
    code, text = rcpt_reply(alias.address)
    assert code == 550 and "This address is disabled" in text


def test_an_unknown_address_in_a_catch_all_domain_is_explained_by_the_catch_all_line(world: dict) -> None:
    publish()
    unknown = f"anything-{world['tag']}@{world['catchall'].name}"

    explanation = services.explain(unknown)

    virtual = [step for step in explanation.to.steps if step.where == "virtual"]
    assert virtual[0].key == f"@{world['catchall'].name}"
    assert virtual[0].line == f"@{world['catchall'].name} {world['owner'].mail}"
    assert explanation.to.outcome == f"Delivered to the mailbox of {world['owner'].mail}"
    assert rcpt_reply(unknown)[0] == 250


def test_a_mailbox_on_vacation_shows_the_copy_to_the_responder(world: dict) -> None:
    owner = world["owner"]
    VacationReply.objects.create(uid=owner.uid, address=owner.mail, enabled=True, subject="Away", body="Back soon.")
    publish()

    explanation = services.explain(owner.mail)

    assert any("vacation copy: handed to the out-of-office responder" in step.says for step in explanation.to.steps)
    assert "a copy to the vacation responder" in explanation.to.outcome
    assert f"the mailbox of {owner.mail}" in explanation.to.outcome


def test_a_suspended_sender_is_refused_by_the_ldap_flag_and_by_sender_access(world: dict) -> None:
    owner = world["owner"]
    alias = Alias.objects.create(owner=world["owner_user"], local_part="shop", domain=world["alias_domain"])
    suspension.suspend(owner.uid, "spam run", None, None)
    publish()

    mailbox = services.explain(owner.mail)
    via_alias = services.explain(alias.address)

    assert [where for where, _ in deciding(mailbox.sender)] == ["LDAP sender check"]
    assert f"query_filter = (&(objectClass=mailAccount)(mail=%s)({settings.LDAP_SENDER_BLOCK_ATTR}=TRUE))" in str(
        deciding(mailbox.sender)[0][1]
    )
    assert deciding(via_alias.sender) == [
        ("sender_access", f"{alias.address} REJECT {settings.SUSPENSION_REJECT_TEXT}")
    ]
    submission = [step for step in services.explain(world["other"].mail).sender.steps if step.where == "sender_login"]
    assert submission[0].line == f"{world['other'].mail} {world['other'].uid}, {world['other'].mail}"
    # The flag taken away behind the database's back: the table still refuses, and the
    # difference is named.
    directory.set_sender_blocked(owner.uid, False)
    drifted = services.explain(owner.mail)
    assert [where for where, _ in deciding(drifted.sender)] == ["sender_access"]
    assert [(d.where, d.live, d.expected) for d in drifted.differences] == [("LDAP sender-block flag", "False", "True")]
    assert "suspension sweep" in str(drifted.note)


def test_a_policy_block_is_named_for_mail_from_the_blocked_sender_and_to_the_blocking_alias(world: dict) -> None:
    alias = Alias.objects.create(owner=world["owner_user"], local_part="news", domain=world["alias_domain"])
    spam = f"spam{world['tag']}.example"
    SenderBlock.objects.create(scope="organisation", sender=spam, is_domain=True)
    SenderBlock.objects.create(
        scope="alias", owner=world["owner_user"], alias=alias, sender=f"bulk@shop{world['tag']}.example"
    )
    publish()

    sender = services.explain(f"bad@mx.{spam}")
    recipient = services.explain(alias.address)

    assert [(s.where, s.key) for s in sender.sender.steps if s.decides] == [
        ("policy service (organisation block)", f"@{spam}")
    ]
    assert "every address of the organisation" in sender.sender.outcome
    assert any(step.key == f"bulk@shop{world['tag']}.example" for step in recipient.to.steps)


def test_a_change_not_yet_published_is_shown_as_pending_with_what_the_database_says(world: dict) -> None:
    alias = Alias.objects.create(owner=world["owner_user"], local_part="soon", domain=world["alias_domain"])
    publish()
    Alias.objects.filter(pk=alias.pk).update(enabled=False)
    publication.request_publication("disable", keys=[alias.address])  # no worker publishes it here

    explanation = services.explain(alias.address)

    assert explanation.to.outcome == f"Delivered to the mailbox of {world['owner'].mail}"  # live: still delivered
    assert ("recipient_access", alias.address, None, "550 5.1.1 This address is disabled") in [
        (d.where, d.key, d.live, d.expected) for d in explanation.differences
    ]
    assert str(explanation.note).startswith("Publishing pending since ")


def test_a_failed_publication_is_named_when_the_tables_differ(world: dict) -> None:
    alias = Alias.objects.create(owner=world["owner_user"], local_part="late", domain=world["alias_domain"])
    publish()
    Alias.objects.filter(pk=alias.pk).update(enabled=False)
    publication.request_publication("disable", keys=[alias.address])
    publication.MapPublication.objects.filter(host=settings.MAIL_HOST).update(
        last_error="postmap: No space left on device", last_error_at=timezone.now()
    )

    explanation = services.explain(alias.address)

    assert "The last publication failed" in str(explanation.note)
    assert "No space left on device" in str(explanation.note)


def test_the_database_view_reads_a_few_people_yet_renders_what_the_whole_directory_would(
    world: dict, make_directory_user: Callable[..., directory.DirectoryUser]
) -> None:
    owner, other, catchall = world["owner"], world["other"], world["catchall"]
    resident = make_directory_user(uid=f"exs{world['tag']}", mail=f"exs{world['tag']}@{catchall.name}")
    alias = Alias.objects.create(owner=world["owner_user"], local_part="seen", domain=world["alias_domain"])
    disabled = Alias.objects.create(owner=world["owner_user"], local_part="unseen", domain=catchall, enabled=False)
    other_user = User.objects.create(username=other.uid, email=other.mail)
    other_alias = Alias.objects.create(owner=other_user, local_part="others", domain=world["alias_domain"])
    VacationReply.objects.create(uid=owner.uid, address=owner.mail, enabled=True, subject="Away", body="Back.")
    suspension.suspend(other.uid, "test", None, None)
    resident_user = User.objects.create(username=resident.uid, email=resident.mail)
    # A catch-all delivering to its owner's mailbox, and a domain only the directory knows of.
    owned = Domain.objects.create(name=f"exowned{world['tag']}.example.org", catchall_owner=resident_user)
    only_directory = f"exdir{world['tag']}.example.org"
    make_directory_user(uid=f"exd{world['tag']}", mail=f"exd{world['tag']}@{only_directory}")
    publish()
    # Saved but not published: the live tables do not lead to their owners' mailboxes.
    pending_alias = Alias.objects.create(owner=world["owner_user"], local_part="pending", domain=world["alias_domain"])
    pending_catchall = Domain.objects.create(name=f"expending{world['tag']}.example.org", catchall_owner=resident_user)
    addresses = [
        alias.address,
        disabled.address,
        other_alias.address,
        owner.mail,
        other.mail,
        resident.mail,
        f"unknown@{catchall.name}",
        f"unknown@{world['alias_domain'].name}",
        f"unknown@{settings.MAIL_DOMAIN}",
        "someone@elsewhere.example",
        f"unknown@{owned.name}",
        f"unknown@{only_directory}",
        pending_alias.address,
        f"unknown@{pending_catchall.name}",
    ]

    for address in addresses:
        asked = services.live_tables(address).asked
        keys = frozenset(key for _, key in asked)
        whole = render_tables(Snapshot(timezone.now(), directory_mailboxes(), keys))
        lines = {(table, line.partition(" ")[0]): line.partition(" ")[2] for table in whole for line in whole[table]}
        assert services.expected_tables(asked) == Tables({k: v for k, v in lines.items() if k in asked}, asked), address
    assert services.explain(alias.address).differences == []


# --- the page, the command, the trail's link ------------------------------------------------------


def _without_tokens(html: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)


def test_a_person_cannot_explain_another_persons_addresses_and_learns_nothing_of_their_existence(
    world: dict, sign_in: Callable[..., Client]
) -> None:
    publish()
    visitor = sign_in()
    someone_elses = world["other"].mail
    nobodys = f"nobody{world['tag']}@{settings.MAIL_DOMAIN}"
    alias = Alias.objects.create(owner=world["owner_user"], local_part="private", domain=world["alias_domain"])

    answers = []
    for address in (someone_elses, alias.address, nobodys):
        response = visitor.get("/explain/", {"address": address})
        assert response.status_code == 200
        assert NOT_OWN in response.content.decode()
        assert "Mail to " not in response.content.decode()
        answers.append(_without_tokens(response.content.decode()).replace(address, "ADDRESS"))
    assert answers[0] == answers[1] == answers[2]

    own = visitor.get("/explain/", {"address": visitor.directory_user.mail})  # type: ignore[attr-defined]
    assert f"Mail to {visitor.directory_user.mail}" in own.content.decode()  # type: ignore[attr-defined]


def test_an_end_user_does_not_see_who_else_blocks_their_address_but_staff_do(
    world: dict, sign_in: Callable[..., Client]
) -> None:
    publish()
    person = sign_in()
    mail = person.directory_user.mail  # type: ignore[attr-defined]
    SenderBlock.objects.create(scope="account", owner=world["owner_user"], sender=mail)

    own_view = person.get("/explain/", {"address": mail}).content.decode()
    staff_view = sign_in("helpdesk").get("/explain/", {"address": mail}).content.decode()

    assert f"Mail from {mail}" in own_view
    assert world["owner"].uid not in own_view
    assert f"every address of {world['owner'].uid}" in staff_view


def test_helpdesk_explains_any_address_on_the_page(world: dict, sign_in: Callable[..., Client]) -> None:
    alias = Alias.objects.create(
        owner=world["owner_user"], local_part="off", domain=world["alias_domain"], enabled=False
    )
    publish()

    page = sign_in("helpdesk").get("/explain/", {"address": alias.address}).content.decode()

    assert f"{alias.address} 550 5.1.1 This address is disabled" in page
    assert "Refused before any catch-all is consulted" in page


def test_each_trail_record_links_to_explain_for_its_recipient_as_things_are_now(
    world: dict, sign_in: Callable[..., Client]
) -> None:
    publish()
    person = sign_in()
    mail = person.directory_user.mail  # type: ignore[attr-defined]
    record = Delivery.objects.create(logged_at=timezone.now(), host="mx", recipient=mail, status="sent")

    detail = person.get(f"/trail/{record.pk}/").content.decode()
    link = re.search(r'href="(/explain/\?address=[^"]+)"', detail)

    assert link is not None
    assert f"Mail to {mail}" in person.get(link.group(1).replace("&amp;", "&")).content.decode()


def test_the_command_prints_the_same_explanation_for_postmasters(world: dict) -> None:
    alias = Alias.objects.create(
        owner=world["owner_user"], local_part="cmd", domain=world["alias_domain"], enabled=False
    )
    publish()
    out = StringIO()

    call_command("explain", alias.address.upper(), stdout=out)

    assert f"=> recipient_access [{alias.address}] {alias.address} 550 5.1.1 This address is disabled" in out.getvalue()


def test_the_command_refuses_what_is_not_an_address() -> None:
    with pytest.raises(Exception, match="Give one mail address"):
        call_command("explain", "@catch.example")
