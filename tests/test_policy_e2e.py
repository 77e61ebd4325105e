"""Sender blocks and alias activity end to end: the web pages, the policy service (in this
process, on its loopback port) and the private Postfix, which asks it at every RCPT."""

import secrets
import smtplib
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings

from activity.models import AliasDailyCount, AliasSenderDomain, LeakFlag, SenderBlock
from aliases.models import Alias, Domain
from localservices.redis import Redis
from policy.service import PolicyThread
from postfix import publication

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PEST = "pest@nuisance.example"
FRIEND = "friend@fine.example"
DEADLINE = 20.0


def rcpt(sender: str, recipient: str) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", settings.SMTP_PORT, timeout=30) as smtp:
        smtp.ehlo("tests.example")
        smtp.mail(sender)
        code, text = smtp.rcpt(recipient)
        smtp.rset()
        return code, text.decode()


def refused_within(seconds: float, sender: str, recipient: str, refused: bool = True) -> tuple[int, str, float]:
    """Poll RCPT until it is refused (or accepted); (code, text, seconds it took)."""
    start = time.monotonic()
    while True:
        code, text = rcpt(sender, recipient)
        took = time.monotonic() - start
        if (code == 550) == refused or took > seconds:
            return code, text, took
        time.sleep(0.05)


def send(sender: str, recipient: str) -> str:
    token = secrets.token_hex(8)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, recipient, f"test {token}"
    message.set_content("hello")
    with smtplib.SMTP("127.0.0.1", settings.SMTP_PORT, timeout=30) as smtp:
        smtp.send_message(message, from_addr=sender, to_addrs=[recipient])
    return token


def delivered(mailbox: str, token: str, wait: float = DEADLINE) -> bool:
    local, _, domain = mailbox.partition("@")
    folder = Path(settings.STATE_DIR) / "mail" / domain / local / "new"
    deadline = time.monotonic() + wait
    while True:
        if folder.is_dir() and any(token in path.read_text(errors="replace") for path in folder.iterdir()):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def known(policy: PolicyThread, *addresses: str) -> None:
    """Wait until the service has read these addresses (it polls every POLICY_REFRESH_SECONDS)."""
    deadline = time.monotonic() + 5
    while not all(address in policy.service.snapshot.recipients for address in addresses):
        assert time.monotonic() < deadline, f"the policy service never read {addresses}"
        time.sleep(0.05)


def publish() -> None:
    publication.request_publication("test")
    outcome = publication.publish(coalesce=False)
    assert outcome.status in ("published", "unchanged"), outcome.error


@pytest.fixture(autouse=True)
def reload_every_time() -> Iterator[None]:
    with override_settings(POSTFIX_RELOAD_MIN_INTERVAL=0):
        yield


@pytest.fixture
def policy() -> Iterator[PolicyThread]:
    running = PolicyThread().start()
    yield running
    running.stop()


@pytest.fixture
def owner(sign_in: Callable[..., Client]) -> dict[str, object]:
    """A signed-in person with a per-site alias (twitter.com) and a random one, published."""
    client = sign_in()
    user = User.objects.get(username=client.directory_user.uid)  # type: ignore[attr-defined]
    domain, _ = Domain.objects.get_or_create(name=f"pol{secrets.token_hex(3)}.example.org", is_alias_domain=True)
    site = Alias.objects.create(owner=user, local_part="twittercom", domain=domain, kind="site", site="twitter.com")
    other = Alias.objects.create(owner=user, local_part=f"r{secrets.token_hex(4)}", domain=domain, kind="random")
    publish()
    return {"client": client, "user": user, "site": site, "other": other, "mailbox": user.email}


def test_a_blocked_sender_is_refused_at_rcpt_within_a_second_and_undo_lets_it_through(policy, owner) -> None:
    client, alias = owner["client"], owner["site"]
    assert rcpt(PEST, alias.address)[0] == 250

    response = client.post(f"/activity/aliases/{alias.pk}/block/", {"sender": PEST, "kind": "sender", "scope": "alias"})
    assert response.status_code == 302
    code, text, took = refused_within(1.0, PEST, alias.address)
    assert code == 550 and "5.7.1" in text and settings.POLICY_REJECT_TEXT in text and took < 1.0
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(PEST, alias.address)
    # Another sender to the same alias, and the blocked one to another alias, are delivered.
    assert delivered(owner["mailbox"], send(FRIEND, alias.address))
    assert delivered(owner["mailbox"], send(PEST, owner["other"].address))

    block = SenderBlock.objects.get(alias=alias)
    client.post(f"/activity/blocks/{block.pk}/delete/", {})
    code, _, took = refused_within(1.0, PEST, alias.address, refused=False)
    assert code == 250 and took < 1.0
    assert delivered(owner["mailbox"], send(PEST, alias.address))


def test_counts_and_sender_domains_appear_after_a_flush(policy, owner) -> None:
    client, alias = owner["client"], owner["other"]
    known(policy, alias.address)
    client.post(f"/activity/aliases/{alias.pk}/block/", {"sender": PEST, "kind": "sender", "scope": "alias"})
    refused_within(1.0, PEST, alias.address)
    for _ in range(3):
        send(FRIEND, alias.address)
    policy.flush()

    counts = AliasDailyCount.objects.get(alias=alias)
    assert counts.accepted >= 3 and counts.refused >= 1
    assert AliasSenderDomain.objects.get(alias=alias, domain="fine.example").last_sender == FRIEND
    assert SenderBlock.objects.get(alias=alias).stopped >= 1
    page = client.get(f"/aliases/{alias.pk}/").content.decode()
    assert "fine.example" in page and "Block this domain" in page
    assert f"{counts.accepted} accepted, {counts.refused} refused" in page  # 30 days and all time
    listing = client.get("/aliases/", {"sort": "most-mail"}).content.decode()
    assert listing.index(alias.address) < listing.index(owner["site"].address)


def test_an_account_wide_block_covers_every_alias_and_the_mailbox_of_that_person(
    policy, owner, make_directory_user
) -> None:
    bystander = make_directory_user()
    publish()
    client = owner["client"]
    response = client.post("/activity/blocks/", {"sender": "nuisance.example", "kind": "domain", "scope": "account"})
    assert response.status_code == 302
    for recipient in (owner["site"].address, owner["other"].address, owner["mailbox"]):
        code, text, _ = refused_within(5.0, "anyone@mx.nuisance.example", recipient)
        assert code == 550 and "5.7.1" in text, recipient
    assert rcpt("anyone@mx.nuisance.example", bystander.mail)[0] == 250


def test_a_block_takes_effect_within_a_second_while_redis_and_the_worker_are_down(policy, owner) -> None:
    client, alias = owner["client"], owner["site"]
    redis = Redis()
    redis.stop()
    try:
        data = {"sender": "nuisance.example", "kind": "domain", "scope": "alias"}
        assert client.post(f"/activity/aliases/{alias.pk}/block/", data).status_code == 302
        code, _, took = refused_within(1.0, PEST, alias.address)
        assert code == 550 and took < 1.0
    finally:
        redis.start()


def test_a_leak_flag_names_the_unrelated_domain_and_blocking_it_from_the_flag_refuses_the_next_mail(
    policy, owner
) -> None:
    client, alias = owner["client"], owner["site"]
    shop = "news@mailer.unrelated-shop.example"
    known(policy, alias.address)
    assert delivered(owner["mailbox"], send("hello@twitter.com", alias.address))
    assert delivered(owner["mailbox"], send(shop, alias.address))
    policy.flush()

    flag = LeakFlag.objects.get(alias=alias)
    assert (flag.registrable_domain, flag.sender_domain) == ("unrelated-shop.example", "mailer.unrelated-shop.example")
    listing = client.get("/aliases/").content.decode()
    assert "possibly leaked" in listing and "mail from mailer.unrelated-shop.example" in listing
    assert "mailer.unrelated-shop.example" in client.get("/").content.decode()

    assert client.post(f"/activity/leaks/{flag.pk}/block/", {}).status_code == 302
    code, _, took = refused_within(1.0, shop, alias.address)
    assert code == 550 and took < 1.0
    assert "possibly leaked" not in client.get("/aliases/").content.decode()


def test_with_the_service_stopped_mail_flows_unblocked_and_counting_resumes_when_it_is_back(owner) -> None:
    alias = owner["other"]
    SenderBlock.objects.create(scope="alias", owner=owner["user"], alias=alias, sender=PEST)
    start = time.monotonic()
    assert rcpt(PEST, alias.address)[0] == 250  # fail-open: DUNNO while the service is down
    assert time.monotonic() - start < 1.0  # one try, no retry delay
    assert delivered(owner["mailbox"], send(FRIEND, alias.address))
    assert not AliasDailyCount.objects.filter(alias=alias).exists()

    running = PolicyThread().start()
    try:
        assert rcpt(PEST, alias.address)[0] == 550
        assert delivered(owner["mailbox"], send(FRIEND, alias.address))
        running.flush()
    finally:
        running.stop()
    assert AliasDailyCount.objects.get(alias=alias).accepted == 1
