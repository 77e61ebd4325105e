"""The outbound check the policy service runs on mail a local person sends.

Outbound means: a SASL login (submission), or a client in LIMIT_LOCAL_NETWORKS sending from one
of our domains without a login. The sender is counted under the login when there is one, under
the envelope sender otherwise. Every RCPT is one recipient; the first RCPT of a message (Postfix's
`instance` attribute) is one message. The answer is a Postfix access action, or None when the
guard has nothing to say (not outbound, or within the limits): the inbound checks then decide.

Everything the guard needs from the database arrives through the callables the policy service
gives it (read on its refresh thread), so a decision never queries the database.
"""

import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Set

from limits.counters import Counters
from limits.rules import Limits, Verdict, decide

log = logging.getLogger(__name__)

MESSAGES_TRACKED = 10_000
# Until the suspension is recorded (a worker thread does it), the guard refuses from memory.
SUSPENDED_MEMORY_SECONDS = 60.0


class OutboundGuard:
    def __init__(
        self,
        counters: Counters,
        limits_for: Callable[[str, str], Limits],
        suspend: Callable[[str, str], object],
        local_networks: list[str],
        local_domains: Callable[[], Set[str]],
        lifted_at: Callable[[str], float | None],
        reject_text: str,
    ) -> None:
        self._counters = counters
        self._limits_for = limits_for
        self._suspend = suspend
        self._networks = [ipaddress.ip_network(n, strict=False) for n in local_networks]
        self._local_domains = local_domains
        self._lifted_at = lifted_at
        self._reject = f"554 5.7.1 {reject_text}"
        self._messages: OrderedDict[str, int] = OrderedDict()
        self._suspended: dict[str, float] = {}  # login -> time.time() of the decision
        self._started = time.time()
        self._reset_at: dict[str, float] = {}  # login -> the lift its counts were reset for
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
        now = time.time()
        # An admin who lifted a suspension (since this service started) gives the person a
        # fresh count: otherwise the counts of the flood would suspend them again at once.
        lifted = self._lifted_at(login)
        if lifted is not None and lifted > self._reset_at.get(login, self._started):
            self._counters.reset(login)
            with self._lock:
                self._reset_at[login] = lifted
                if self._suspended.get(login, now) < lifted:
                    del self._suspended[login]
        with self._lock:
            suspended_at = self._suspended.get(login)
            if suspended_at is not None:
                if now - suspended_at <= SUSPENDED_MEMORY_SECONDS:
                    return self._reject
                del self._suspended[login]
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
                self._suspended[login] = now
            log.warning("outbound: %s passed a hard limit: %s", login, decision.why)
            self._suspend(login, decision.why)
            return self._reject
        if decision.verdict is Verdict.DEFER:
            return f"451 4.7.1 Sending limit reached ({decision.why}); try again later"
        return None
