"""The vacation responder: a long-running LMTP server on loopback that Postfix hands copies to.

Each recipient of a copy gets its own LMTP status after DATA: 250 when it was decided
(reply sent, or no reply and why), 451 when the reply could not be handed to Postfix or the
database did not answer, so that Postfix keeps that copy and retries it. The user's own
delivery never waits for any of this: it is a separate recipient of the same message.
"""

import asyncio
import errno
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import syntax
from django.conf import settings
from django.db import DatabaseError, connection, connections
from django.utils import timezone

from accounts import directory
from mailadmin.outgoing_mail import MailNotSent, MailRefused, close_session
from mailadmin.service_thread import ServiceThread
from outofoffice.evaluation import evaluate, is_internal_sender
from outofoffice.replies import ReplyRecord, build_reply, hand_over
from outofoffice.routing import mailbox_for
from outofoffice.rules import parse_incoming

log = logging.getLogger("outofoffice.responder")

TEMPORARY = "451 4.3.0 vacation reply not handed over yet; try again later"


def _reset_connection() -> None:
    try:
        connection.close()
    except DatabaseError:
        pass  # already gone; the next query connects afresh


def handle_copy(mailbox: str, sender: str, raw: bytes) -> str:
    """Decide one copy for one user, send the reply if one is due, and return the LMTP status."""
    now = timezone.now()
    incoming = parse_incoming(sender, raw)
    try:
        result = evaluate(mailbox, incoming, now)
    except DatabaseError as exc:
        # Each thread keeps its connection between copies (reconnecting per copy costs more
        # than deciding); after an error it starts afresh, and Postfix retries this copy.
        _reset_connection()
        log.warning("deferred mailbox=%s sender=%s: database error %s", mailbox, incoming.sender, type(exc).__name__)
        return TEMPORARY
    except directory.DirectoryError as exc:
        # Whether the user may send is not known: no reply now, Postfix retries the copy.
        log.warning("deferred mailbox=%s sender=%s: directory error %s", mailbox, incoming.sender, type(exc).__name__)
        return TEMPORARY
    decision = result.decision
    log.info(
        "decision mailbox=%s sender=%s reply=%s rule=%s reason=%s",
        mailbox,
        incoming.sender or "<>",
        "yes" if decision.reply else "no",
        decision.rule,
        decision.reason,
    )
    if not decision.reply or result.vacation is None:
        return f"250 2.0.0 no vacation reply ({decision.rule})"
    try:
        internal = bool(result.vacation.internal_body.strip()) and is_internal_sender(incoming.sender)
    except DatabaseError as exc:
        _reset_connection()
        log.warning("deferred mailbox=%s sender=%s: database error %s", mailbox, incoming.sender, type(exc).__name__)
        return TEMPORARY
    try:
        content = build_reply(result.vacation, incoming, internal, now)
    except ValueError as exc:
        # Stored text that cannot make a valid message will not get better by retrying.
        log.error("not replying mailbox=%s: the stored reply is unusable (%s)", mailbox, exc)
        return "250 2.0.0 no vacation reply (unusable reply text)"
    record = ReplyRecord(result.vacation, incoming.sender, now, result.last_reply_at)
    return _hand_over(mailbox, incoming.sender, content, record)


def _hand_over(mailbox: str, sender: str, content: bytes, record: ReplyRecord) -> str:
    """Send the reply, recording it just before its end of data, and return the LMTP status.

    Killed before the content is out, the responder has recorded nothing and Postfix's retry
    replies; killed after the record, the retry finds "already answered" and does not reply
    again (if the kill came before Postfix queued the reply, that one reply is lost: the
    not-twice side of a moment that cannot be told apart)."""
    try:
        hand_over(content, sender, record.write)
    except DatabaseError as exc:
        _reset_connection()
        log.warning(
            "deferred mailbox=%s sender=%s: the reply could not be recorded (%s); abandoned before its end of "
            "data, nothing was queued",
            mailbox,
            sender,
            type(exc).__name__,
        )
        return TEMPORARY
    except MailRefused as exc:
        _take_back(record, mailbox)
        log.warning("not replying mailbox=%s sender=%s: Postfix refused the reply: %s", mailbox, sender, exc)
        return "250 2.0.0 no vacation reply (refused by the mail system)"
    except MailNotSent as exc:
        _take_back(record, mailbox)
        log.warning("deferred mailbox=%s sender=%s: Postfix did not accept the reply: %s", mailbox, sender, exc)
        return TEMPORARY
    log.info("replied mailbox=%s sender=%s: Postfix accepted it (recorded before its end of data)", mailbox, sender)
    return "250 2.0.0 vacation reply sent"


def _take_back(record: ReplyRecord, mailbox: str) -> None:
    try:
        record.undo()
    except DatabaseError as exc:
        _reset_connection()
        log.error(
            "reply not accepted but still recorded mailbox=%s sender=%s (%s): this sender gets no reply to this "
            "absence until the interval has passed",
            mailbox,
            record.sender,
            type(exc).__name__,
        )


class ResponderHandler:
    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self.executor = executor
        # One decision at a time per (user, sender): two copies at once must not both reply.
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._users: dict[tuple[str, str], int] = {}

    @contextmanager
    def _lock_entry(self, key: tuple[str, str]) -> Iterator[asyncio.Lock]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            yield lock
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]

    async def _one(self, recipient: str, sender: str, raw: bytes) -> str:
        mailbox = mailbox_for(recipient)
        if mailbox is None:
            log.info("decision recipient=%s reply=no rule=unknown-recipient", recipient[:320])
            return "250 2.0.0 not a vacation routing address; nothing to do"
        loop = asyncio.get_running_loop()
        with self._lock_entry((mailbox, sender.lower())) as lock:
            async with lock:
                try:
                    return await loop.run_in_executor(self.executor, handle_copy, mailbox, sender, raw)
                except Exception:
                    log.exception("deferred mailbox=%s: unexpected error", mailbox)
                    return TEMPORARY

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or b""
        sender = envelope.mail_from or ""
        statuses = await asyncio.gather(*(self._one(rcpt, sender, raw) for rcpt in envelope.rcpt_tos))
        # LMTP: one status line per accepted recipient, in RCPT order.
        return "\r\n".join(statuses)


# No decision needs more of the headers than this; what follows is read and discarded.
HEADER_LIMIT = 256 * 1024
TOO_LARGE = "552 5.3.4 message too large for the vacation responder"


class HeadersOnlyLMTP(LMTP):
    """LMTP that keeps only the headers of a copy: the body, which may be hundreds of
    megabytes, is read and thrown away line by line, so memory stays bounded whatever arrives.
    A copy over data_size_limit gets TOO_LARGE for each recipient (the hand-off drops it
    without telling the sender)."""

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        headers = bytearray()
        in_headers = True
        at_line_start = True
        size = 0
        while True:
            try:
                line = await self._reader.readuntil(b"\r\n")
                whole = True
            except asyncio.LimitOverrunError as exc:
                # A line longer than the reader's buffer: a part of it now, the rest later.
                line = await self._reader.read(exc.consumed)
                whole = False
            except asyncio.IncompleteReadError:
                return  # the client went away in the middle of the data
            if at_line_start and line == b".\r\n":
                break
            size += len(line)
            if in_headers:
                if not at_line_start or not whole or len(headers) + len(line) > HEADER_LIMIT:
                    in_headers = False  # a header this long is no header a decision reads
                elif line == b"\r\n":
                    in_headers = False
                    headers += line
                else:
                    headers += line[1:] if line.startswith(b".") else line  # RFC 5321 4.5.2
            at_line_start = whole
        self.envelope.original_content = bytes(headers)
        self.envelope.content = self.envelope.original_content
        if self.data_size_limit and size > self.data_size_limit:
            status = "\r\n".join(TOO_LARGE for _ in self.envelope.rcpt_tos)
            log.info("refused copy of %d bytes (limit %d): %s", size, self.data_size_limit, TOO_LARGE)
        else:
            status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)


def make_protocol(handler: ResponderHandler) -> LMTP:
    return HeadersOnlyLMTP(
        handler,
        # Advertised as SIZE: Postfix does not send a larger copy (and drops it silently).
        data_size_limit=settings.RESPONDER_MAX_MESSAGE_BYTES,
        enable_SMTPUTF8=True,  # never refuse a copy Postfix may send with SMTPUTF8
        decode_data=False,
        hostname="responder.mailadmin.invalid",
        ident="mailadmin vacation responder",
    )


class WorkerPool(ThreadPoolExecutor):
    """Threads for the database and SMTP work; each closes its own database connection at the end
    (a Django connection can only be closed by the thread that opened it)."""

    def __init__(self, workers: int) -> None:
        self._started = 0
        self._count_lock = threading.Lock()
        super().__init__(max_workers=workers, thread_name_prefix="responder", initializer=self._count)

    def _count(self) -> None:
        with self._count_lock:
            self._started += 1

    def close(self) -> None:
        # One task per thread: the barrier keeps a thread from taking a second one.
        barrier = threading.Barrier(self._started) if self._started else None

        def close_connection() -> None:
            connections.close_all()
            close_session()
            if barrier is not None:
                barrier.wait(timeout=5)

        for _ in range(self._started):
            self.submit(close_connection)
        self.shutdown(wait=True, cancel_futures=False)


BIND_ATTEMPTS = 50  # 0.2 s apart: a loopback port can be held for a moment as a connection's source port


async def _listen(handler: ResponderHandler, host: str, port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    for attempt in range(1, BIND_ATTEMPTS + 1):
        try:
            return await loop.create_server(lambda: make_protocol(handler), host, port, reuse_address=True)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == BIND_ATTEMPTS:
                raise
            if attempt == 1:
                log.warning("%s:%s is in use; retrying for %.0f s", host, port, BIND_ATTEMPTS * 0.2)
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


async def serve(host: str, port: int, workers: int, started: threading.Event | None = None) -> None:
    executor = WorkerPool(workers)
    handler = ResponderHandler(executor)
    server = await _listen(handler, host, port)
    log.info("vacation responder listening on %s:%s (LMTP)", host, port)
    if started is not None:
        started.set()
    try:
        async with server:
            await server.serve_forever()
    finally:
        server.close()
        executor.close()


class ResponderThread(ServiceThread):
    """The responder inside this process (tests): start() returns once it listens."""

    def __init__(self, host: str | None = None, port: int | None = None, workers: int = 4) -> None:
        self.host = host or settings.RESPONDER_HOST
        self.port = port or settings.RESPONDER_PORT
        self.workers = workers
        super().__init__(
            f"the responder on {self.host}:{self.port}",
            lambda started: serve(self.host, self.port, self.workers, started),
            BIND_ATTEMPTS * 0.2 + 10,
        )
