"""The outbound check the policy service runs on mail a local person sends.

Outbound means: a SASL login (submission), or a client in LIMIT_LOCAL_NETWORKS sending from one
of our domains without a login. The sender is counted under the login when there is one, under
the envelope sender otherwise. Every RCPT is one recipient; the first RCPT of a message (Postfix's
`instance` attribute) is one message. The answer is a Postfix access action, or None for mail
that is not outbound (the inbound checks then decide).
"""

import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from limits.counters import Counters
from limits.rules import Limits, Verdict, decide

log = logging.getLogger(__name__)

MESSAGES_TRACKED = 10_000
SUSPENDED_MEMORY_SECONDS = 300


class OutboundGuard:
    def __init__(
        self,
        counters: Counters,
        limits_for: Callable[[str, str], Limits],
        suspend: Callable[[str, str], object],
        local_networks: list[str],
        local_domains: Callable[[], set[str]],
        reject_text: str,
    ) -> None:
        self._counters = counters
        self._limits_for = limits_for
        self._suspend = suspend
        self._networks = [ipaddress.ip_network(n, strict=False) for n in local_networks]
        self._local_domains = local_domains
        self._reject = f"554 5.7.1 {reject_text}"
        self._messages: OrderedDict[str, int] = OrderedDict()
        self._suspended: dict[str, float] = {}
        self._lock = threading.Lock()

    def login_of(self, request: Mapping[str, str]) -> str | None:
        login = request.get("sasl_username", "").strip().lower()
        if login:
            return login
        sender = request.get("sender", "").strip().lower()
        if not sender or "@" not in sender or not self._is_local(request.get("client_address", "")):
            return None
        return sender if sender.rpartition("@")[2] in self._local_domains() else None

    def _is_local(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def check(self, request: Mapping[str, str]) -> str | None:
        if request.get("protocol_state", "RCPT").upper() != "RCPT":
            return None
        login = self.login_of(request)
        if login is None:
            return None
        with self._lock:
            if self._suspended.get(login, 0) > time.monotonic():
                return self._reject
            instance = request.get("instance", "")
            first = instance not in self._messages
            in_message = self._messages.pop(instance, 0) + 1
            self._messages[instance] = in_message
            while len(self._messages) > MESSAGES_TRACKED:
                self._messages.popitem(last=False)
        counts = self._counters.add(login, messages=1 if first else 0, recipients=1)
        sender = request.get("sender", "") or login
        decision = decide(counts, self._limits_for(login, sender.rpartition("@")[2]), in_message)
        if decision.verdict is Verdict.SUSPEND:
            with self._lock:
                self._suspended[login] = time.monotonic() + SUSPENDED_MEMORY_SECONDS
            log.warning("outbound: %s passed a hard limit: %s", login, decision.why)
            self._suspend(login, decision.why)
            return self._reject
        if decision.verdict is Verdict.DEFER:
            return f"451 4.7.1 Sending limit reached ({decision.why}); try again later"
        return None
