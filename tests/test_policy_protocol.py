"""The policy service over a real socket: hostile and malformed requests, one connection with
thousands of requests, many connections at once. Every request gets one well-formed answer and
the service keeps deciding correctly afterwards."""

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from activity.models import BlockGeneration, SenderBlock
from aliases.models import Alias, Domain, MapGeneration
from localservices.process import free_port
from policy import protocol
from policy.service import PolicyThread

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER = re.compile(rb"action=[^\r\n]+\n\n")
REJECT = b"action=550 5.7.1 " + settings.POLICY_REJECT_TEXT.encode() + b"\n\n"
DUNNO = b"action=DUNNO\n\n"


def request(sender: str = "someone@outside.example", recipient: str = "nobody@example.org", **extra: str) -> bytes:
    attributes = {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "protocol_name": "ESMTP",
        "client_address": "192.0.2.1",
        "helo_name": "mx.outside.example",
        "sender": sender,
        "recipient": recipient,
        **extra,
    }
    return "".join(f"{k}={v}\n" for k, v in attributes.items()).encode() + b"\n"


def answers(sock: socket.socket, count: int) -> list[bytes]:
    """Read exactly `count` answers; each must be well-formed."""
    data = b""
    while data.count(b"\n\n") < count:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(ANSWER.findall(data))} of {count} answers"
        data += chunk
    found = [m.group(0) for m in ANSWER.finditer(data)]
    assert b"".join(found) == data, data[:200]
    assert len(found) == count
    return found


def connect() -> socket.socket:
    sock = socket.create_connection((settings.POLICY_HOST, settings.POLICY_PORT), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@pytest.fixture
def blocked(django_user_model) -> tuple[str, str]:
    """An alias with a blocked sender, in place before the service starts: (sender, alias address)."""
    owner = User.objects.create(username="protoowner", email="protoowner@example.org")
    domain = Domain.objects.create(name="proto-alias.example.org", is_alias_domain=True)
    alias = Alias.objects.create(owner=owner, local_part="shop", domain=domain)
    SenderBlock.objects.create(scope="alias", owner=owner, alias=alias, sender="pest@nuisance.example")
    MapGeneration.objects.create(requested=1)
    BlockGeneration.objects.create(changes=1)
    return "pest@nuisance.example", alias.address


@pytest.fixture
def service(blocked) -> Iterator[PolicyThread]:
    running = PolicyThread().start()
    yield running
    running.stop()


def test_a_blocked_sender_is_refused_and_anyone_else_gets_dunno(service, blocked) -> None:
    sender, alias = blocked
    with connect() as sock:
        sock.sendall(
            request(sender, alias) + request("friend@elsewhere.example", alias) + request(sender, "x@y.example")
        )
        assert answers(sock, 3) == [REJECT, DUNNO, DUNNO]


HOSTILE = [
    b"\n",  # an empty request
    b"request=smtpd_access_policy\n\n",  # attributes missing
    b"recipient=" + b"A" * 1_000_000 + b"\n\n",  # a megabyte in one value
    b"".join(b"x%d=%s\n" % (i, b"y" * 900) for i in range(200)) + b"\n",  # many lines, too long in all
    b"request=smtpd_access_policy\nsender=\xff\xfe@bad.example\nrecipient=a@b\n\n",  # not UTF-8
    b"this line has no equals sign\n\n",
    b"Request=smtpd_access_policy\n\n",  # not a name Postfix sends
    b"request=smtpd_access_policy\r\nprotocol_state=RCPT\r\n\r\n",  # CRLF
    b"\x00\x01\x02=\x1b[31m\n\n",
]


@pytest.mark.parametrize("hostile", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_request_gets_dunno_and_the_next_one_on_the_connection_is_decided(service, blocked, hostile) -> None:
    sender, alias = blocked
    with connect() as sock:
        sock.sendall(hostile + request(sender, alias))
        assert answers(sock, 2) == [DUNNO, REJECT]


def test_a_megabyte_line_split_over_many_writes_is_skipped_without_losing_the_framing(service, blocked) -> None:
    sender, alias = blocked
    with connect() as sock:
        sock.sendall(b"request=smtpd_access_policy\nsender=")
        for _ in range(16):
            sock.sendall(b"B" * 65536)
            time.sleep(0.005)
        sock.sendall(b"\n")  # the end of the long line: not an empty line
        sock.sendall(b"\n" + request(sender, alias))
        assert answers(sock, 2) == [DUNNO, REJECT]


def test_thousands_of_requests_on_one_connection_each_get_their_answer_in_order(service, blocked) -> None:
    sender, alias = blocked
    pair = request(sender, alias) + request("friend@elsewhere.example", alias)
    with connect() as sock:
        sock.sendall(pair * 2500)
        assert answers(sock, 5000) == [REJECT, DUNNO] * 2500


def test_many_connections_at_once_all_get_right_answers(service, blocked) -> None:
    sender, alias = blocked
    failures: list[str] = []

    def client() -> None:
        try:
            with connect() as sock:
                for _ in range(50):
                    sock.sendall(request(sender, alias))
                    assert answers(sock, 1) == [REJECT]
        except Exception as exc:  # collected: an assertion in a thread would be lost
            failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []


def test_a_client_that_disconnects_mid_request_leaves_the_service_up(service, blocked) -> None:
    sender, alias = blocked
    for _ in range(20):
        with connect() as sock:
            sock.sendall(b"request=smtpd_access_policy\nsender=half")
    with connect() as sock:
        sock.sendall(request(sender, alias))
        assert answers(sock, 1) == [REJECT]


def test_an_error_in_the_decision_answers_dunno_and_the_connection_goes_on() -> None:
    calls = []

    def answer(attributes) -> str:
        calls.append(attributes)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return "DUNNO" if len(calls) == 2 else "bad\naction"

    port = free_port()
    started = threading.Event()
    loop = asyncio.new_event_loop()
    task = loop.create_task(protocol.serve("127.0.0.1", port, answer, started))
    thread = threading.Thread(target=lambda: loop.run_until_complete(asyncio.wait([task])), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request() * 3)
            assert answers(sock, 3) == [DUNNO, DUNNO, DUNNO]
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(10)
    assert len(calls) == 3


def test_a_client_that_never_reads_its_answers_is_throttled_and_others_are_served(service, blocked) -> None:
    sender, alias = blocked
    flood = connect()
    flood.settimeout(0.2)
    sent = 0
    try:
        for _ in range(2000):  # until the kernel buffers fill because the service stopped reading
            flood.sendall(request(sender, alias) * 100)
            sent += 1
    except TimeoutError:
        pass
    assert sent < 2000, "the service kept reading from a client that reads nothing"
    with connect() as sock:
        sock.sendall(request(sender, alias))
        assert answers(sock, 1) == [REJECT]
    flood.close()
