"""What the map publication needs from out-of-office: copies of mail for users on vacation.

Filled in by the vacation feature; the publication in aliases/postfix_maps.py calls these.
"""


def vacation_virtual_entries() -> list[tuple[str, str]]:
    """(mailbox address, extra virtual target) pairs: a copy to the responder's routing address."""
    return []


def vacation_transport_entries() -> list[tuple[str, str]]:
    """(domain, transport) pairs routing the autoreply domain to the responder."""
    return []
