"""The policy service: one start-up, then decisions from an in-memory snapshot.

- Decisions run in the event loop (policy/decision.py, pure) and only add to in-memory counts.
- A refresh thread polls two one-row counters every POLICY_REFRESH_SECONDS and reloads the
  aliases or the blocks when one moved (and everything, the directory included, every
  FULL_REFRESH_SECONDS). A database that does not answer leaves the last snapshot in force.
- A flush thread writes the counts every ACTIVITY_FLUSH_SECONDS; a failed write keeps them for
  the next try. A crash loses at most one interval's counts, never a block.
"""

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection

from accounts import directory
from activity.leaks import is_related, registrable_domain
from limits.services import OutboundSnapshot, build_guard
from mailadmin.service_thread import ServiceThread
from policy import protocol, snapshot
from policy.decision import Decision, Recipient, Snapshot, decide
from policy.recording import write_batch
from policy.tally import Batch

log = logging.getLogger("policy")

FULL_REFRESH_SECONDS = 300.0
# Sending limits, mail domains and lifted suspensions for the outbound check (limits/).
OUTBOUND_REFRESH_SECONDS = 5.0
DIRECTORY_RETRY_SECONDS = 10.0
MISSING_OWNER_RETRY_SECONDS = 60.0
# A batch refused by the database for its content (not for being down) is retried this often, then dropped.
INTEGRITY_RETRIES = 3


def _reset_connection() -> None:
    try:
        connection.close()
    except DatabaseError:
        pass  # already gone; the next query connects afresh


class PolicyService:
    def __init__(self) -> None:
        self.snapshot = Snapshot(
            related_domains=tuple(d.lower() for d in settings.LEAK_RELATED_DOMAINS),
            reject_text=settings.POLICY_REJECT_TEXT,
        )
        self.batch = Batch()
        self._aliases: dict[str, Recipient] = {}
        self._mailboxes: dict[str, Recipient] = {}
        self._generations: tuple[int | None, int | None] = (None, None)
        self._next_full = 0.0
        self._next_directory = 0.0  # no earlier directory read for a missing mailbox owner
        self._missing_owners: set[int] = set()  # owners of account-wide blocks without a mailbox at the last read
        self._reload_flags = False
        self._integrity_failures = 0
        self._refresher = ThreadPoolExecutor(1, thread_name_prefix="policy-refresh")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="policy-flush")
        # Mail local people send: counted, deferred past a soft limit, suspended past a hard one.
        self.outbound = OutboundSnapshot.empty()
        self._next_outbound = 0.0
        self._suspender = ThreadPoolExecutor(1, thread_name_prefix="policy-suspend")
        self.guard = build_guard(lambda: self.outbound, self._suspender)

    # --- the hot path (event loop) ---------------------------------------------------------

    def answer(self, attributes: Any) -> str:
        outbound = self.guard.check(attributes)
        if outbound is not None:
            return outbound
        decision: Decision = decide(attributes, self.snapshot, is_related, registrable_domain)
        if decision.outcome is not None:
            # Whole seconds: enough for "last mail", and the flush adapts each distinct value once.
            self.batch.add(decision.outcome, datetime.now(UTC).replace(microsecond=0))
            if decision.outcome.block_id is not None:
                log.info(
                    "refused sender=<%s> recipient=<%s> block=%s",
                    decision.outcome.sender,
                    attributes.get("recipient", "").lower(),
                    decision.outcome.block_id,
                )
        return decision.action

    # --- refresh (its own thread and database connection) ----------------------------------

    def refresh(self) -> None:
        try:
            self._refresh()
        except DatabaseError as exc:
            _reset_connection()
            log.warning("policy refresh: database error %s; the last snapshot stays in force", type(exc).__name__)

    def _refresh(self) -> None:
        now = time.monotonic()
        full = now >= self._next_full
        aliases_at, blocks_at = snapshot.generations()
        if full or blocks_at != self._generations[1]:
            # Blocks first and on their own: they take effect before any slower read below.
            organisation, accounts, aliases = snapshot.blocks()
            self.snapshot = replace(self.snapshot, organisation=organisation, accounts=accounts, aliases=aliases)
        if full or self._reload_flags:  # a flush wrote new leak flags
            self._reload_flags = False
            self.snapshot = replace(self.snapshot, flagged=snapshot.flagged())
        recipients_changed = False
        if full or aliases_at != self._generations[0]:
            self._aliases = snapshot.alias_recipients()
            recipients_changed = True
        # Mailbox addresses matter for account-wide blocks: read the directory when an owner of
        # one is not known yet (a new block), and every FULL_REFRESH_SECONDS.
        missing = set(self.snapshot.accounts) - {recipient.owner_id for recipient in self._mailboxes.values()}
        if full or (missing and (missing != self._missing_owners or now >= self._next_directory)):
            recipients_changed = self._refresh_mailboxes(now) or recipients_changed
            self._missing_owners = set(self.snapshot.accounts) - {r.owner_id for r in self._mailboxes.values()}
        if recipients_changed:
            self.snapshot = replace(self.snapshot, recipients={**self._mailboxes, **self._aliases})
        if full or now >= self._next_outbound:
            self.outbound = OutboundSnapshot.load()
            self._next_outbound = now + OUTBOUND_REFRESH_SECONDS
        self._generations = (aliases_at, blocks_at)
        if full:
            self._next_full = now + FULL_REFRESH_SECONDS

    def _refresh_mailboxes(self, now: float) -> bool:
        try:
            self._mailboxes = snapshot.mailbox_recipients()
        except directory.DirectoryError as exc:
            self._next_directory = now + DIRECTORY_RETRY_SECONDS
            log.warning("policy refresh: directory error %s; mailbox addresses as last read", type(exc).__name__)
            return False
        # An owner without a mailbox in the directory is looked for again only after a while.
        self._next_directory = now + MISSING_OWNER_RETRY_SECONDS
        return True

    # --- flush (its own thread and database connection) ------------------------------------

    def _write(self, batch: Batch) -> str:
        try:
            write_batch(batch)
        except IntegrityError as exc:
            _reset_connection()
            return f"integrity:{type(exc).__name__}"
        except DatabaseError as exc:
            _reset_connection()
            return f"database:{type(exc).__name__}"
        return ""

    async def flush(self) -> None:
        batch, self.batch = self.batch, Batch()
        if not len(batch) and not batch.dropped:
            return
        if batch.dropped:
            log.warning("policy counts: %d decisions were not counted (too many waiting)", batch.dropped)
            batch.dropped = 0
        failure = await asyncio.get_running_loop().run_in_executor(self._writer, self._write, batch)
        if not failure:
            self._integrity_failures = 0
            self._reload_flags = self._reload_flags or bool(batch.leaks)
            return
        if failure.startswith("integrity:"):
            self._integrity_failures += 1
            if self._integrity_failures > INTEGRITY_RETRIES:
                log.error("policy counts: batch refused %d times (%s); dropped", self._integrity_failures, failure)
                self._integrity_failures = 0
                return
        log.warning("policy counts: not written (%s); kept for the next flush", failure)
        batch.merge(self.batch)
        self.batch = batch

    # --- running ---------------------------------------------------------------------------

    async def _every(self, seconds: float, work: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except Exception:
                log.exception("policy service: periodic work failed; carrying on")

    async def _refresh_async(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._refresher, self.refresh)

    async def run(self, host: str, port: int, started: threading.Event | None = None) -> None:
        await self._refresh_async()  # the first snapshot before the first answer
        server = protocol.PolicyServer(self.answer)
        await server.start(host, port)
        log.info("policy service listening on %s:%s", host, port)
        if started is not None:
            started.set()
        self._workers = [  # referenced: the loop keeps only weak references to tasks
            asyncio.create_task(self._every(settings.POLICY_REFRESH_SECONDS, self._refresh_async)),
            asyncio.create_task(self._every(settings.ACTIVITY_FLUSH_SECONDS, self.flush)),
        ]
        try:
            await server.serve_forever()
        finally:
            server.close()
            for worker in self._workers:
                worker.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            await self.flush()  # what was counted since the last flush
            self._refresher.shutdown(wait=False)
            self._writer.shutdown(wait=True)
            self._suspender.shutdown(wait=True)


class PolicyThread(ServiceThread):
    """The service inside this process (tests): start() returns once it listens."""

    def __init__(self, host: str | None = None, port: int | None = None) -> None:
        self.host = host or settings.POLICY_HOST
        self.port = port or settings.POLICY_PORT
        self.service = PolicyService()
        super().__init__(
            f"the policy service on {self.host}:{self.port}",
            lambda started: self.service.run(self.host, self.port, started),
        )

    def flush(self) -> None:
        """Write the counts now (tests: instead of waiting for ACTIVITY_FLUSH_SECONDS)."""
        self.call(self.service.flush())
