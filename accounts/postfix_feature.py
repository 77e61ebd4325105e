"""What sender suspension puts in the Postfix tables (the postfix app calls this): every
mailbox address of a suspended user in sender_access. The live LDAP flag (accounts/
sender_block.py) covers the mailbox as well; the table also covers sites without postfix-ldap."""

from collections.abc import Iterator
from datetime import datetime

from accounts.suspension import sender_access_entries
from postfix.features import Entry, Snapshot


class SenderAccess:
    def entries(self, snapshot: Snapshot) -> Iterator[Entry]:
        for address, action in sender_access_entries(snapshot.mailboxes):
            yield Entry("sender_access", address, action)

    def due_keys(self, since: datetime, now: datetime) -> set[str]:
        return set()  # a suspension ends through reinstate(), which requests a publication

    def next_due(self, now: datetime) -> datetime | None:
        return None


feature = SenderAccess()
