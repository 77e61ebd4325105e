"""What an address, a local part and a domain name may look like, checked at input.

Everything stored here ends up as a key or value in a Postfix hash: table, where whitespace,
`#`, `,` or a line break would change the table's meaning. Nothing invalid is ever stored:
the publication relies on that and does not check again.
"""

import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

MAX_LOCAL_PART = 64
MAX_DOMAIN = 253
MAX_ADDRESS = 254

# Letters, digits, and single dots, hyphens or underscores between them. No "+": it is the
# usual recipient delimiter and would make one alias shadow another.
LOCAL_PART_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9]|[._-](?=[a-z0-9]))*\Z")
DOMAIN_LABEL_PATTERN = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")

# Names only admins may take: role accounts (RFC 2142) and what mail software treats specially.
RESERVED_LOCAL_PARTS = frozenset(
    {
        "abuse",
        "admin",
        "administrator",
        "daemon",
        "ftp",
        "hostmaster",
        "info",
        "mailer-daemon",
        "marketing",
        "news",
        "no-reply",
        "noc",
        "noreply",
        "nobody",
        "postmaster",
        "root",
        "sales",
        "security",
        "support",
        "usenet",
        "uucp",
        "webmaster",
        "www",
        "listserv",
        "majordomo",
    }
)
# Mailing-list conventions: mail from such addresses is treated as automatic.
RESERVED_PREFIXES = ("owner-",)
RESERVED_SUFFIXES = ("-request", "-owner", "-bounces")

# Characters a person may paste by mistake, named in the error message.
_NAMED_CHARACTERS = {
    "#": "#",
    ",": "a comma",
    ":": "a colon",
    '"': "quotes",
    "'": "quotes",
    "`": "quotes",
    "@": "@ (choose the domain separately)",
    "+": "+",
    "\\": "a backslash",
    "<": "<",
    ">": ">",
    ";": "a semicolon",
    "/": "a slash",
}


def _refuse_unsafe_characters(value: str, what: str) -> None:
    if any(c.isspace() for c in value):
        raise ValidationError(f"{what} may not contain spaces or line breaks.", code="whitespace")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError(f"{what} may not contain control characters.", code="control")
    for char, name in _NAMED_CHARACTERS.items():
        if char in value:
            raise ValidationError(f"{what} may not contain {name}.", code="character")


def is_reserved(local_part: str) -> bool:
    local_part = local_part.lower()
    return (
        local_part in RESERVED_LOCAL_PARTS
        or local_part.startswith(RESERVED_PREFIXES)
        or local_part.endswith(RESERVED_SUFFIXES)
    )


def normalize_local_part(value: str, *, allow_reserved: bool = False) -> str:
    """The lower-case local part, or ValidationError with a message for people."""
    if "\0" in value:
        raise ValidationError("The name may not contain control characters.", code="control")
    _refuse_unsafe_characters(value, "The name")
    if not value:
        raise ValidationError("Enter a name for the address.", code="required")
    if len(value) > MAX_LOCAL_PART:
        raise ValidationError(
            f"The name may be at most {MAX_LOCAL_PART} characters long (it has {len(value)}).", code="length"
        )
    local_part = value.lower()
    if not local_part.isascii() or not LOCAL_PART_PATTERN.match(local_part):
        raise ValidationError(
            "Use only letters a–z, digits, and dots, hyphens or underscores between them.", code="invalid"
        )
    if not allow_reserved and is_reserved(local_part):
        raise ValidationError(f"“{local_part}” is reserved for the mail administrators.", code="reserved")
    return local_part


def normalize_domain(value: str) -> str:
    """A lower-case ASCII domain name (internationalised names in their xn-- form)."""
    _refuse_unsafe_characters(value, "A domain name")
    name = value.lower().rstrip(".")
    if not name:
        raise ValidationError("Enter a domain name.", code="required")
    if len(name) > MAX_DOMAIN:
        raise ValidationError(f"A domain name may be at most {MAX_DOMAIN} characters long.", code="length")
    if not name.isascii():
        raise ValidationError("Write an internationalised domain name in its xn-- form.", code="idn")
    labels = name.split(".")
    if len(labels) < 2 or not all(DOMAIN_LABEL_PATTERN.match(label) for label in labels) or labels[-1].isdigit():
        raise ValidationError(f"“{name}” is not a domain name.", code="invalid")
    return name


def normalize_address(value: str) -> str:
    """A mailbox address local@domain, lower-case (reserved names allowed: they are real mailboxes)."""
    if value.count("@") != 1:
        _refuse_unsafe_characters(value.replace("@", ""), "An address")
        raise ValidationError(f"“{value}” is not a mail address (local@domain).", code="invalid")
    local, domain = value.split("@")
    if len(value) > MAX_ADDRESS:
        raise ValidationError(f"An address may be at most {MAX_ADDRESS} characters long.", code="length")
    try:
        local = normalize_local_part(local, allow_reserved=True)
        domain = normalize_domain(domain)
    except ValidationError as exc:
        message = exc.messages[0].replace("The name", "The part before @").replace("A domain name", "The domain")
        raise ValidationError(f"{value}: {message}", code=exc.code) from None
    return f"{local}@{domain}"


def normalize_address_list(value: str) -> list[str]:
    """Addresses separated by commas or line breaks; duplicates dropped, order kept."""
    addresses: list[str] = []
    for item in re.split(r"[,\r\n]+", value):
        item = item.strip(" \t")
        if item:
            address = normalize_address(item)
            if address not in addresses:
                addresses.append(address)
    return addresses


SITE_SCHEMES = ("http", "https")
NOT_A_SITE = "Enter the site's web address (https://shop.example.com/signup) or its host name (shop.example.com)."


def _ascii_host(host: str) -> str:
    # An internationalised name as people paste it (bücher.example) becomes its xn-- form; labels
    # of anything but letters, digits and hyphens (emoji, punctuation) are not host names.
    if host.isascii():
        return host
    if not all(label and all(c.isalnum() or c == "-" for c in label) for label in host.split(".")):
        raise ValidationError(NOT_A_SITE, code="invalid")
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(NOT_A_SITE, code="invalid") from None


def site_name(value: str) -> str:
    """The host a pasted web address or a typed host name names: lower-case, without www.
    Anything else (other schemes, markup, a bare word, an IP address) is a ValidationError."""
    _refuse_control_characters(value)
    text = value.strip()
    if not text:
        raise ValidationError("Enter the site's address or name.", code="required")
    scheme, separator, _ = text.partition("://")
    if separator and scheme.lower() not in SITE_SCHEMES:
        raise ValidationError(NOT_A_SITE, code="scheme")
    url = text if separator else f"https://{text.removeprefix('//')}"
    try:
        parts = urlsplit(url)
        host, _port = (parts.hostname or ""), parts.port  # .port raises for a port that is none
    except ValueError:
        raise ValidationError(NOT_A_SITE, code="invalid") from None
    host = host.rstrip(".").removeprefix("www.")
    try:
        return normalize_domain(_ascii_host(host))
    except ValidationError:
        raise ValidationError(NOT_A_SITE, code="invalid") from None


def propose_local_part(value: str) -> str:
    """A local part for a site: https://www.twitter.com/signup -> twittercom ("" if none)."""
    try:
        name = site_name(value)
    except ValidationError:
        return ""
    return re.sub(r"[^a-z0-9]", "", name)[: MAX_LOCAL_PART - 4]


def _refuse_control_characters(value: str) -> None:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError("The site may not contain control characters or line breaks.", code="control")
