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
READ_SIZE = 64 * 1024
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


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: Answer) -> None:
    requests = RequestReader()
    peer = writer.get_extra_info("peername")
    try:
        while True:
            data = await asyncio.wait_for(reader.read(READ_SIZE), IDLE_TIMEOUT)
            if not data:
                break
            replies = []
            for attributes, problem in requests.feed(data):
                if attributes is None:
                    log.warning("malformed policy request from %s (%s); answering DUNNO", peer, problem)
                    action = DUNNO
                else:
                    action = _answer_safely(answer, attributes)
                replies.append(f"action={action}\n\n".encode())
            if replies:
                writer.write(b"".join(replies))
                await writer.drain()
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()


async def listen(host: str, port: int, answer: Answer) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _connection(reader, writer, answer)

    return await asyncio.start_server(handle, host, port, reuse_address=True, backlog=1024)


async def serve(host: str, port: int, answer: Answer, started: threading.Event | None = None) -> None:
    """The bare protocol with a given answer (the benchmark's baseline uses it with DUNNO)."""
    server = await listen(host, port, answer)
    if started is not None:
        started.set()
    async with server:
        await server.serve_forever()
