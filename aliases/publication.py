"""Publishing the Postfix maps. Filled in by the map publication feature."""


def request_publication(reason: str = "") -> None:
    """Call inside the transaction that changed data the maps are made from: the need to
    publish is recorded with the change, and a worker publishes after commit."""
