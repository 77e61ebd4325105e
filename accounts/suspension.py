"""Sender suspension. Filled in by the suspension feature; the publication in
aliases/postfix_maps.py calls sender_access_entries()."""


def sender_access_entries() -> list[tuple[str, str]]:
    """(address, access action) pairs for the hash: sender-access table."""
    return []
