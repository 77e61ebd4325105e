"""Is a sender related to the site an alias was made for? Registrable domains come from the
Public Suffix List bundled in the publicsuffixlist package (never fetched at run time)."""

from collections.abc import Iterable
from functools import cache, lru_cache

from publicsuffixlist import PublicSuffixList


@cache
def _list() -> PublicSuffixList:
    return PublicSuffixList()  # the package's own snapshot of the list, read once (~30 ms)


@lru_cache(maxsize=65536)  # the policy service asks for the same sender domains all day
def registrable_domain(host: str) -> str | None:
    """mailer.shop.co.uk -> shop.co.uk; None for a public suffix itself or a malformed name."""
    host = host.strip(".").lower()
    if not host or ".." in host:
        return None
    result = _list().privatesuffix(host)
    return str(result) if result else None


def site_domain(site: str) -> str | None:
    """The registrable domain of an alias's remembered site (`twitter.com`, `shop.example.com/x`)."""
    host = site.strip().lower().split("://")[-1].split("/")[0].split(":")[0]
    return registrable_domain(host)


def is_related(sender_domain: str, site_registrable: str, related: Iterable[str]) -> bool:
    """The sender's registrable domain is the site's, or the sender is a mail service that
    sends for many sites (LEAK_RELATED_DOMAINS: the domain or any subdomain of it)."""
    sender_domain = sender_domain.lower()
    if registrable_domain(sender_domain) == site_registrable:
        return True
    return any(sender_domain == d or sender_domain.endswith("." + d) for d in related)
