"""Postfix's policy delegation protocol on a socket (SMTPD_POLICY_README): a request is
`name=value` lines ended by an empty line, the answer `action=...` and an empty line; one
connection carries many requests. Only framing here; what to answer is the caller's `answer`.

Every request gets exactly one well-formed answer, in order: a malformed or oversized one gets
DUNNO and a log line, and so does any error in `answer`."""

import asyncio
import logging
import re
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger("policy.protocol")

DUNNO = "DUNNO"
# Postfix's own requests are under 2 KB; anything far larger is not Postfix.
MAX_REQUEST_BYTES = 64 * 1024
# Postfix closes an idle policy connection after smtpd_policy_service_max_idle (300 s).
IDLE_TIMEOUT = 900.0
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")

Answer = Callable[[Mapping[str, str]], str]
Parsed = tuple[dict[str, str] | None, str]  # (attributes, "") or (None, what was wrong)


class RequestReader:
    """Splits the bytes of one connection into requests, holding at most about two requests' worth."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[bytes | bytearray] = []
        self._size = 0
        self._problem = ""
        self._skipping_line = False  # the rest of a line already too long to keep

    def feed(self, data: bytes) -> list[Parsed]:
        done: list[Parsed] = []
        self._buffer += data
        *complete, rest = self._buffer.split(b"\n")  # in C: the loop below only sorts lines
        self._buffer = rest
        for line in complete:
            if self._skipping_line:
                self._skipping_line = False
            elif not line or line == b"\r":
                done.append(self._finish())
            elif not self._problem:
                self._size += len(line) + 1
                if self._size > MAX_REQUEST_BYTES:
                    self._oversized()
                else:
                    self._lines.append(line)
        if len(self._buffer) > MAX_REQUEST_BYTES:
            self._oversized()
            self._buffer = bytearray()
            self._skipping_line = True
        return done

    def _oversized(self) -> None:
        self._problem = self._problem or f"longer than {MAX_REQUEST_BYTES} bytes"
        self._lines.clear()

    def _finish(self) -> Parsed:
        lines, problem = self._lines, self._problem
        self._lines, self._problem, self._size = [], "", 0
        if problem:
            return None, problem
        if not lines:
            return None, "empty request"
        try:
            text = b"\n".join(lines).decode("utf-8")
        except UnicodeDecodeError:
            return None, "not UTF-8"
        if "\r" in text:
            text = text.replace("\r\n", "\n").removesuffix("\r")
        attributes: dict[str, str] = {}
        for line in text.split("\n"):
            name, equals, value = line.partition("=")
            if not equals or not _is_name(name):
                return None, "a line that is not name=value"
            attributes[name] = value
        return attributes, ""


_NAMES_SEEN: set[str] = set()


def _is_name(name: str) -> bool:
    """An attribute name as Postfix writes them; the few real ones are remembered after one check."""
    if name in _NAMES_SEEN:
        return True
    if not _NAME.match(name):
        return False
    if len(_NAMES_SEEN) < 256:
        _NAMES_SEEN.add(name)
    return True


def _answer_safely(answer: Answer, attributes: Mapping[str, str]) -> str:
    try:
        action = answer(attributes)
    except Exception:
        log.exception("policy decision failed; answering DUNNO")
        return DUNNO
    if "\n" in action or "\r" in action or not action:
        log.error("policy decision gave an unusable action; answering DUNNO")
        return DUNNO
    return action


class _Connection(asyncio.Protocol):
    """One Postfix connection: bytes in, answers out, no task or stream per connection."""

    def __init__(self, server: "PolicyServer") -> None:
        self._server = server
        self._requests = RequestReader()
        self._transport: asyncio.Transport | None = None
        self._peer: object = None
        self._last = 0.0
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._peer = transport.get_extra_info("peername")
        self._server.connections.add(self)
        self._last = asyncio.get_running_loop().time()
        self._idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self._last = asyncio.get_running_loop().time()
        replies = []
        for attributes, problem in self._requests.feed(data):
            if attributes is None:
                log.warning("malformed policy request from %s (%s); answering DUNNO", self._peer, problem)
                action = DUNNO
            else:
                action = _answer_safely(self._server.answer, attributes)
            replies.append(f"action={action}\n\n".encode())
        if replies and self._transport is not None:
            self._transport.write(b"".join(replies))

    # A client that sends but does not read its answers: stop reading until it does.
    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last >= IDLE_TIMEOUT:
            self.close()
        else:
            self._idle = loop.call_later(IDLE_TIMEOUT - (loop.time() - self._last), self._check_idle)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()


class PolicyServer:
    """Listens on loopback and answers every request with `answer` (see the module's text)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True, backlog=1024)

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    def close(self) -> None:
        """Stop listening and end every connection (Postfix keeps its own open)."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close()


async def serve(host: str, port: int, answer: Answer, started: threading.Event | None = None) -> None:
    """The bare protocol with a given answer (the benchmark's baseline uses it with DUNNO)."""
    server = PolicyServer(answer)
    await server.start(host, port)
    if started is not None:
        started.set()
    try:
        await server.serve_forever()
    finally:
        server.close()
