"""The delivery trail end to end: mail through the private Postfix, which writes its own log
(maillog_file, the line trail.postlog contributes), read by the follower into records."""

import secrets
import smtplib
import subprocess
import time
from collections.abc import Callable

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import override_settings

from accounts.directory import DirectoryUser
from aliases import publication
from aliases.models import Alias, Domain
from localservices.outside import OutsideWorld
from trail.models import Delivery
from trail.services import Follower

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

DEADLINE = 30.0


def publish() -> None:
    publication.request_publication("test")
    with override_settings(POSTFIX_RELOAD_MIN_INTERVAL=0):
        outcome = publication.publish(coalesce=False)
    assert outcome.status in ("published", "unchanged"), outcome.error


def send(sender: str, recipient: str) -> tuple[int, str]:
    """The reply to RCPT; the message is sent when it was accepted."""
    with smtplib.SMTP("127.0.0.1", settings.SMTP_PORT, timeout=10) as smtp:
        smtp.ehlo("tests.example")
        smtp.mail(sender)
        code, text = smtp.rcpt(recipient)
        if code == 250:
            smtp.data(f"From: {sender}\r\nTo: {recipient}\r\nSubject: private words\r\n\r\nhello\r\n".encode())
        return code, text.decode()


def wait_for_record(follower: Follower, what: str, found: Callable[[], Delivery | None]) -> Delivery:
    deadline = time.monotonic() + DEADLINE
    while True:
        follower.step()
        record = found()
        if record is not None:
            return record
        if time.monotonic() > deadline:
            tail = settings.MAILLOG_FILE.read_text(errors="replace")[-3000:]
            raise AssertionError(f"no record of {what}\n--- maillog tail ---\n{tail}")
        time.sleep(0.2)


def test_delivered_refused_bounced_and_deferred_mail_each_appear_with_status_and_reply(
    make_directory_user: Callable[..., DirectoryUser],
) -> None:
    tag = secrets.token_hex(3)
    person = make_directory_user(uid=f"trail{tag}")
    owner = User.objects.create(username=person.uid, email=person.mail)
    domain, _ = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})
    live = Alias.objects.create(owner=owner, local_part=f"shop{tag}", domain=domain)
    leaked = Alias.objects.create(owner=owner, local_part=f"leaked{tag}", domain=domain, enabled=False)
    publish()
    sender = f"sender{tag}@outside.example"
    follower = Follower(host=f"e2e-{tag}")
    mine = Delivery.objects.filter(host=f"e2e-{tag}")

    assert send(sender, live.address)[0] == 250
    code, reply = send(sender, leaked.address)
    assert code == 550
    outside = OutsideWorld().start()
    try:
        assert send(person.mail, f"nosuch{tag}@remote.example")[0] == 250
        bounced = wait_for_record(
            follower, "the bounce", lambda: mine.filter(recipient=f"nosuch{tag}@remote.example").first()
        )
    finally:
        outside.stop()
    assert send(person.mail, f"away{tag}@remote.example")[0] == 250  # the next hop is down now

    delivered = wait_for_record(follower, "the delivery", lambda: mine.filter(original_recipient=live.address).first())
    refused = wait_for_record(follower, "the refusal", lambda: mine.filter(recipient=leaked.address).first())
    deferred = wait_for_record(
        follower, "the deferral", lambda: mine.filter(recipient=f"away{tag}@remote.example").first()
    )
    try:
        assert (delivered.status, delivered.recipient, delivered.sender) == ("sent", person.mail, sender)
        assert (delivered.relay, delivered.reply, delivered.dsn) == ("virtual", "delivered to maildir", "2.0.0")
        assert delivered.client == "localhost[127.0.0.1]" and delivered.queue_id

        assert (refused.status, refused.queue_id, refused.sender, refused.dsn) == ("rejected", "", sender, "5.1.1")
        assert "This address is disabled" in refused.reply and refused.reply.startswith("550 5.1.1")
        assert refused.reply.split(" ", 1)[1] in reply.replace("\n", " ")  # what the client was told

        assert (bounced.status, bounced.dsn, bounced.sender) == ("bounced", "5.1.1", person.mail)
        assert "550 5.1.1 no such user here" in bounced.reply

        assert (deferred.status, deferred.dsn, deferred.relay) == ("deferred", "4.4.1", "none")
        assert "Connection refused" in deferred.reply
        # Nothing of the message itself: the subject is not in any record.
        assert not mine.filter(reply__contains="private words").exists()
    finally:
        subprocess.run(
            ["/usr/sbin/postsuper", "-c", str(settings.POSTFIX_CONFIG_DIR), "-d", deferred.queue_id],
            capture_output=True,
            check=False,
        )
        follower.close()


def test_postfix_logrotate_in_the_middle_of_a_burst_loses_and_doubles_nothing(
    make_directory_user: Callable[..., DirectoryUser],
) -> None:
    # `postfix logrotate` renames the live file, has postlogd reopen, and gzips the old one.
    tag = secrets.token_hex(3)
    person = make_directory_user(uid=f"burst{tag}")
    publish()
    follower = Follower(host=f"burst-{tag}")
    mine = Delivery.objects.filter(host=f"burst-{tag}", recipient=person.mail, status="sent")
    try:
        with smtplib.SMTP("127.0.0.1", settings.SMTP_PORT, timeout=10) as smtp:
            for n in range(80):
                smtp.sendmail(f"burst{n}@outside.example", [person.mail], f"Subject: {n}\r\n\r\nhi\r\n".encode())
                if n % 10 == 0:
                    follower.step()
                if n == 40:
                    subprocess.run(
                        ["/usr/sbin/postfix", "-c", str(settings.POSTFIX_CONFIG_DIR), "logrotate"], check=True
                    )
        deadline = time.monotonic() + DEADLINE
        while mine.count() < 80 and time.monotonic() < deadline:
            follower.step()
            time.sleep(0.2)
        for _ in range(5):  # anything still to come would be a double
            follower.step()
            time.sleep(0.1)
    finally:
        follower.close()

    senders = list(mine.values_list("sender", flat=True))
    assert sorted(senders) == sorted(f"burst{n}@outside.example" for n in range(80))
    assert len(set(mine.values_list("queue_id", flat=True))) == 80
    assert list(settings.MAILLOG_FILE.parent.glob(f"{settings.MAILLOG_FILE.name}.*")), "the log was not rotated"
