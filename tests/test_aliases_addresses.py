import pytest
from django.core.exceptions import ValidationError

from aliases.addresses import (
    normalize_address,
    normalize_address_list,
    normalize_domain,
    normalize_local_part,
    propose_local_part,
    site_name,
)


@pytest.mark.parametrize(
    "pasted,proposal",
    [
        ("https://www.twitter.com/signup", "twittercom"),
        ("http://Shop.Example.co.uk:8080/cart?x=1", "shopexamplecouk"),
        ("www.github.com", "githubcom"),
        ("news.ycombinator.com/login", "newsycombinatorcom"),
        ("My Local Bakery", ""),
        ("https://user:pw@bank.example/", "bankexample"),
        ("", ""),
        ("!!!", ""),
    ],
)
def test_a_pasted_site_proposes_a_local_part(pasted, proposal) -> None:
    assert propose_local_part(pasted) == proposal


def test_a_proposal_for_a_very_long_site_name_fits_a_local_part() -> None:
    assert len(propose_local_part("x" * 250 + ".com")) <= 64


def test_the_site_is_remembered_by_its_host_without_www() -> None:
    assert site_name("https://www.Twitter.com/signup") == "twitter.com"
    assert site_name("  shop.example.com ") == "shop.example.com"
    assert site_name("https://bücher.example/") == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    "hostile",
    [
        "<b>bold</b>",
        "javascript:alert(1)",
        "ftp://",
        "ftp://files.example.com",
        "\U0001f600",
        "shop\U0001f600.example",
        "My Bakery",
        "twitter",
        "192.168.1.1",
        "[::1]",
        "https://shop.example:99999/",
        "data:text/html,<script>alert(1)</script>",
        "x.example\\evil.example",
        "%00.example",
    ],
)
def test_a_site_is_a_host_name_or_a_web_address_only(hostile: str) -> None:
    with pytest.raises(ValidationError, match="web address"):
        site_name(hostile)
    assert propose_local_part(hostile) == ""


def test_a_site_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValidationError, match="control characters"):
        site_name("twitter.com\nBcc: x@evil.example")


@pytest.mark.parametrize(
    "value,message",
    [
        ("two words", "spaces or line breaks"),
        ("line\nbreak", "spaces or line breaks"),
        ("tab\there", "spaces or line breaks"),
        ("nul\x00byte", "control characters"),
        ("bell\x07", "control characters"),
        ("hash#tag", "may not contain #"),
        ("a,b", "comma"),
        ("a:b", "colon"),
        ('"quoted"', "quotes"),
        ("it's", "quotes"),
        ("me@there", "@"),
        ("plus+tag", "+"),
        ("x" * 65, "at most 64"),
        ("x" * 300, "at most 64"),
        (".leading", "Use only letters"),
        ("trailing-", "Use only letters"),
        ("double..dot", "Use only letters"),
        ("ümlaut", "Use only letters"),
        ("", "Enter a name"),
        ("postmaster", "reserved"),
        ("Abuse", "reserved"),
        ("MAILER-DAEMON", "reserved"),
        ("noreply", "reserved"),
        ("owner-list", "reserved"),
        ("list-request", "reserved"),
    ],
)
def test_unsafe_or_reserved_local_parts_are_refused_with_a_reason(value, message) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_local_part(value)
    assert message in caught.value.messages[0]


def test_local_parts_are_stored_lower_case() -> None:
    assert normalize_local_part("Shop.Example_1-x") == "shop.example_1-x"


def test_admins_may_take_reserved_names_but_not_unsafe_ones() -> None:
    assert normalize_local_part("postmaster", allow_reserved=True) == "postmaster"
    with pytest.raises(ValidationError):
        normalize_local_part("post master", allow_reserved=True)


@pytest.mark.parametrize("value", ["example", "-bad.example", "a..example", "exa mple.org", "x.123", "ü.example"])
def test_malformed_domain_names_are_refused(value) -> None:
    with pytest.raises(ValidationError):
        normalize_domain(value)


def test_domain_names_are_lower_case_without_a_trailing_dot() -> None:
    assert normalize_domain("Alias.Example.ORG.") == "alias.example.org"
    assert normalize_domain("xn--bcher-kva.example") == "xn--bcher-kva.example"


def test_an_address_list_splits_on_commas_and_lines_and_drops_duplicates() -> None:
    assert normalize_address_list("Alice@Example.org, bob@example.org\n alice@example.org\r\n") == [
        "alice@example.org",
        "bob@example.org",
    ]


@pytest.mark.parametrize(
    "value", ["no-at-sign", "a@b@example.org", "a b@example.org", "a#b@example.org", "@example.org"]
)
def test_malformed_addresses_are_refused(value) -> None:
    with pytest.raises(ValidationError):
        normalize_address(value)
