"""Merging the generated Postfix configuration into a host's own main.cf and master.cf.

Pure functions: text in, text and a list of changes out; no files, no processes. The command
`manage.py postfix_apply` reads the host's files, calls `merge`, and writes what it returns.

The rules, postconf-like:
- A main.cf parameter is set where the host defines it (the last definition, the one Postfix
  uses) or appended once at the end, never defined a second time (`postconf -e`).
- Lists are merged, not replaced. `smtpd_*_restrictions`: our items go after the host's leading
  refusals (reject_*, defer_*) and before the first item that can accept the mail (permit_*,
  a check_* table, a restriction class), so no host rule lets a switched-off alias or a
  suspended sender through. Lookup tables and domain lists (`*_maps`, `*_domains`): ours
  first, the host's after. Items already present are left where they are.
- own parameters (`mailadmin_*`) that nothing references are left out: Postfix warns about
  every unused parameter.
- master.cf: a standard Postfix service the host already has (lmtp, ...) is left alone; a
  submission service the host has gets our `-o` options (others kept, `postconf -P`); our own
  services are added or replaced whole (`postconf -M`).
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

OWN_PREFIX = "mailadmin_"
OWN_HEADER = "# mailadmin (manage.py postfix_apply)"

# Services of Debian's stock master.cf: if the host has one, it is theirs to define.
STANDARD_SERVICES = frozenset(
    "smtp pickup cleanup qmgr tlsmgr rewrite bounce defer trace verify flush proxymap proxywrite "
    "relay showq error retry discard local virtual lmtp anvil scache postlog".split()
)
# Services the host may already run for its own users: we set our options on them.
SHARED_SERVICES = frozenset({"submission", "submissions", "smtps"})

# Restriction names that take the next token as their argument.
_ARGUMENT_TAKING = re.compile(
    r"^(check_\w+|reject_rbl_client|reject_rhsbl_\w+|permit_dnswl_client|permit_rhswl_client|sleep)$"
)
_REFUSING = re.compile(r"^(reject_\w+|defer_\w+|warn_if_reject)$")
# Parameter names; per-transport ones carry the master.cf service name, hyphens included.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class MergeError(ValueError):
    """The host's configuration or the generated one cannot be merged safely."""


@dataclass(frozen=True)
class Change:
    file: str
    text: str

    def __str__(self) -> str:
        return f"{self.file}: {self.text}"


@dataclass(frozen=True)
class Service:
    """One master.cf entry: the service line's fields and the `-o name=value` options."""

    name: str
    type: str
    fields: tuple[str, ...]  # private unpriv chroot wakeup maxproc command [arguments]
    options: tuple[tuple[str, str], ...] = ()
    comments: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.type)

    def lines(self) -> list[str]:
        head = f"{self.name:<9} {self.type:<5} " + " ".join(f"{value:<7}" for value in self.fields[:5])
        out = [*self.comments, f"{head} {' '.join(self.fields[5:])}".rstrip()]
        out += [f"  -o {name}={value}" for name, value in self.options]
        return out


@dataclass(frozen=True)
class Desired:
    """What the generator wants: main.cf parameters (name → value) and master.cf services."""

    parameters: dict[str, str]
    services: list[Service] = field(default_factory=list)


# --- main.cf -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Definition:
    name: str
    value: str
    start: int  # index of the first line
    end: int  # index after the last line


def _logical_lines(lines: list[str]) -> Iterable[tuple[int, int]]:
    """(start, end) of each logical line: a line at column 0 and the indented lines that follow.
    Blank and comment lines inside are skipped by Postfix; they belong to the span only when an
    indented line follows them."""
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#") or line[0].isspace():
            i += 1
            continue
        end = i + 1
        j = i + 1
        while j < len(lines):
            nxt = lines[j]
            if not nxt.strip() or nxt.lstrip().startswith("#"):
                j += 1
                continue
            if nxt[0].isspace():
                j += 1
                end = j
                continue
            break
        yield i, end
        i = end


def _joined(lines: list[str]) -> str:
    parts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return " ".join(parts)


def parse_main_cf(text: str) -> list[_Definition]:
    lines = text.splitlines()
    found = []
    for start, end in _logical_lines(lines):
        logical = _joined(lines[start:end])
        name, eq, value = logical.partition("=")
        if not eq or not _NAME.match(name.strip()):
            raise MergeError(f"main.cf line {start + 1} is not 'name = value': {lines[start][:80]!r}")
        found.append(_Definition(name.strip(), value.strip(), start, end))
    return found


def main_cf_parameters(text: str) -> dict[str, str]:
    """name → value as Postfix reads it (a later definition overrides an earlier one)."""
    return {definition.name: definition.value for definition in parse_main_cf(text)}


def list_items(value: str) -> list[str]:
    """A Postfix list value split into items; 'check_x_access type:table' is one item, and an
    inline table's {...} is one token."""
    tokens: list[str] = []
    current = ""
    depth = 0
    for char in value:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if depth == 0 and (char.isspace() or char == ","):
            if current:
                tokens.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise MergeError(f"unbalanced braces in {value[:80]!r}")
    if current:
        tokens.append(current)
    items: list[str] = []
    i = 0
    while i < len(tokens):
        if (_ARGUMENT_TAKING.match(tokens[i]) or tokens[i] == "warn_if_reject") and i + 1 < len(tokens):
            if tokens[i] == "warn_if_reject" and i + 2 < len(tokens) and _ARGUMENT_TAKING.match(tokens[i + 1]):
                items.append(" ".join(tokens[i : i + 3]))
                i += 3
                continue
            items.append(f"{tokens[i]} {tokens[i + 1]}")
            i += 2
            continue
        items.append(tokens[i])
        i += 1
    return items


def _is_restriction_list(name: str) -> bool:
    return name.startswith("smtpd_") and name.endswith("_restrictions")


def _is_lookup_list(name: str) -> bool:
    return name.endswith("_maps") or name.endswith("_domains")


def merged_list(name: str, host_items: list[str], ours: list[str]) -> list[str]:
    """The host's list with our items added where they belong (see the module's rules)."""
    missing = [item for item in ours if item not in host_items]
    if not missing:
        return host_items
    if not _is_restriction_list(name):
        return [*missing, *host_items]
    at = 0
    while at < len(host_items) and _REFUSING.match(host_items[at].split()[0]):
        at += 1
    return [*host_items[:at], *missing, *host_items[at:]]


def _our_list_items(name: str, generated: list[str]) -> list[str]:
    """Of a generated restriction list, the items that are ours to add to a host's list: the
    checks against our tables. The generic permit/reject items only stand in for a host that has
    no list of its own."""
    if not _is_restriction_list(name):
        return generated
    return [item for item in generated if " " in item]


def _format(name: str, value: str) -> list[str]:
    items = list_items(value) if (_is_restriction_list(name) or _is_lookup_list(name)) else []
    if len(items) > 1:
        return [f"{name} ="] + [f"    {item}," for item in items[:-1]] + [f"    {items[-1]}"]
    return [f"{name} = {value}"]


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def merge_main_cf(text: str, wanted: dict[str, str]) -> tuple[str, list[Change]]:
    lines = text.splitlines()
    definitions = {d.name: d for d in parse_main_cf(text)}  # the last one of each name
    replacements: dict[int, tuple[int, list[str]]] = {}
    appended: list[str] = []
    changes: list[Change] = []
    for name, value in wanted.items():
        current = definitions.get(name)
        if current is not None and (_is_restriction_list(name) or _is_lookup_list(name)):
            host_items = list_items(current.value)
            new_items = merged_list(name, host_items, _our_list_items(name, list_items(value)))
            added = [item for item in new_items if item not in host_items]
            if not added:
                continue
            new_value = ", ".join(new_items)
            changes.append(Change("main.cf", f"{name}: add {', '.join(added)} (the host's items kept)"))
        else:
            new_value = value
            if current is not None and _same(current.value, value):
                continue
            was = "unset" if current is None else f"was {current.value}"
            changes.append(Change("main.cf", f"set {name} = {value} ({was})"))
        if current is None:
            appended += _format(name, new_value)
        else:
            replacements[current.start] = (current.end, _format(name, new_value))
    return _spliced(lines, replacements, appended), changes


def _spliced(lines: list[str], replacements: dict[int, tuple[int, list[str]]], appended: list[str]) -> str:
    """lines with each replaced span (start → (end, new lines)) swapped, and appended lines
    added at the end under our header."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if i in replacements:
            end, new_lines = replacements[i]
            out += new_lines
            i = end
            continue
        out.append(lines[i])
        i += 1
    if appended:
        if OWN_HEADER not in lines:
            out += ["", OWN_HEADER]
        out += appended
    return "\n".join(out) + "\n"


# --- master.cf -----------------------------------------------------------------------------


def _service_from(lines: list[str]) -> Service:
    tokens = _joined(lines).split()
    if len(tokens) < 8:
        raise MergeError(f"master.cf entry with fewer than 8 fields: {lines[0][:80]!r}")
    name, kind, *rest = tokens
    fields: list[str] = rest[:6]
    options: list[tuple[str, str]] = []
    args = rest[6:]
    i = 0
    while i < len(args):
        if args[i] == "-o" and i + 1 < len(args) and "=" in args[i + 1]:
            option, _, value = args[i + 1].partition("=")
            options.append((option, value))
            i += 2
            continue
        fields.append(args[i])
        i += 1
    return Service(name, kind, tuple(fields), tuple(options))


def parse_master_cf(text: str) -> list[tuple[Service, int, int]]:
    lines = text.splitlines()
    return [(_service_from(lines[start:end]), start, end) for start, end in _logical_lines(lines)]


def _with_options(service: Service, ours: tuple[tuple[str, str], ...]) -> Service:
    wanted = dict(ours)
    options = [(name, wanted.pop(name, value)) for name, value in service.options]
    options += [(name, value) for name, value in ours if name in wanted]
    return Service(service.name, service.type, service.fields, tuple(options))


def merge_master_cf(text: str, wanted: list[Service]) -> tuple[str, list[Change]]:
    lines = text.splitlines()
    existing = {service.key: (service, start, end) for service, start, end in parse_master_cf(text)}
    replacements: dict[int, tuple[int, list[str]]] = {}
    appended: list[str] = []
    changes: list[Change] = []
    for service in wanted:
        label = f"{service.name}/{service.type}"
        found = existing.get(service.key)
        if found is None:
            appended += service.lines()
            changes.append(Change("master.cf", f"add service {label}"))
            continue
        current, start, end = found
        if service.name in STANDARD_SERVICES:
            continue
        if service.name in SHARED_SERVICES:
            new = _with_options(current, service.options)
            if new.options == current.options:
                continue
            changes.append(Change("master.cf", f"set our -o options on the host's service {label}"))
        else:
            new = Service(service.name, service.type, service.fields, service.options)
            if (current.fields, current.options) == (new.fields, new.options):
                continue
            changes.append(Change("master.cf", f"replace service {label}"))
        replacements[start] = (end, new.lines())
    return _spliced(lines, replacements, appended), changes


# --- the generated configuration -------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def checked_lines(lines: Iterable[str]) -> list[str]:
    """Generated lines, refused if a setting put a line break or other control character into
    one: it would start a parameter or service of its own in the host's files."""
    out = list(lines)
    for line in out:
        if _CONTROL.search(line):
            raise MergeError(f"a setting puts a control character into the Postfix configuration: {line[:80]!r}")
    return out


def desired_from_generated(main_cf: str, master_cf: str, services: Iterable[str]) -> Desired:
    """The generator's main.cf and master.cf text reduced to what this host asked for: the
    services named in `services` (besides the standard ones and our own), and only the own
    parameters something references."""
    parameters: dict[str, str] = {}
    for definition in parse_main_cf(main_cf):
        if definition.name in parameters:
            raise MergeError(f"the generated main.cf defines {definition.name} twice")
        parameters[definition.name] = definition.value
    asked = set(services)
    chosen = [
        service
        for service, _, _ in parse_master_cf(master_cf)
        if service.name not in SHARED_SERVICES or service.name in asked
    ]
    unknown = asked - {service.name for service, _, _ in parse_master_cf(master_cf)}
    if unknown:
        raise MergeError(f"the generated master.cf has no service {', '.join(sorted(unknown))}")
    return Desired(_referenced_only(parameters, chosen), chosen)


def _referenced_only(parameters: dict[str, str], services: list[Service]) -> dict[str, str]:
    kept = {name: value for name, value in parameters.items() if not name.startswith(OWN_PREFIX)}
    pending = {name: value for name, value in parameters.items() if name.startswith(OWN_PREFIX)}
    texts = [*kept.values(), *(value for service in services for _, value in service.options)]
    grew = True
    while grew:
        grew = False
        for name in list(pending):
            if any(re.search(rf"\${{?{name}\b", text) for text in texts):
                kept[name] = pending.pop(name)
                texts.append(kept[name])
                grew = True
    return kept


def without_ldap(desired: Desired) -> Desired:
    """The configuration for a host without postfix-ldap: every ldap: table taken out of the lists
    (the published tables alone then refuse suspended senders, within the publication delay).
    Submission needs the ldap: tables for its checks by login, so it cannot be asked for too."""
    if any(service.name in SHARED_SERVICES for service in desired.services):
        raise MergeError("submission checks senders by login through ldap: tables: it needs postfix-ldap")
    parameters = {}
    for name, value in desired.parameters.items():
        if "ldap:" not in value:
            parameters[name] = value
            continue
        kept = [item for item in list_items(value) if "ldap:" not in item]
        if kept:
            parameters[name] = ", ".join(kept)
    return Desired(_referenced_only(parameters, desired.services), desired.services)


def referenced_ldap_tables(parameters: dict[str, str], services: list[Service]) -> set[str]:
    """Paths of the ldap: tables the configuration uses."""
    texts = [*parameters.values(), *(value for service in services for _, value in service.options)]
    return {path for text in texts for path in re.findall(r"ldap:(/[^\s,}]+)", text)}


def local_destination_conflicts(mydestination: str, domains: Iterable[str]) -> list[str]:
    """Our domains that the host also lists in mydestination (expanded, as `postconf -x` prints
    it): Postfix would deliver those to local Unix accounts, not to the mailboxes, and warn."""
    local = {item.lower().rstrip(".") for item in list_items(mydestination)}
    return sorted({domain.lower() for domain in domains} & local)


def merge(host_main_cf: str, host_master_cf: str, desired: Desired) -> tuple[str, str, list[Change]]:
    main_cf, main_changes = merge_main_cf(host_main_cf, desired.parameters)
    master_cf, master_changes = merge_master_cf(host_master_cf, desired.services)
    return main_cf, master_cf, main_changes + master_changes


# --- ldap: table files ----------------------------------------------------------------------

_UNSAFE_SECRET = re.compile(r"[\x00-\x20\x7f]")


def ldap_table_text(lines: list[str], password: str) -> str:
    """A generated ldap: table with the real bind password instead of the placeholder (the
    generator's comments dropped: they name another mode)."""
    if not password or _UNSAFE_SECRET.search(password):
        raise MergeError("the LDAP bind password must be one line without spaces or control characters")
    out = []
    for line in lines:
        if line.lstrip().startswith("#") or not line.strip():
            continue
        name = line.partition("=")[0].strip()
        out.append(f"bind_pw = {password}" if name == "bind_pw" else line)
    if not any(line.startswith("bind_pw = ") for line in out):
        raise MergeError("the generated ldap: table has no bind_pw line")
    return (
        "# written by manage.py postfix_apply; mode 0640 root:postfix (it holds a password)\n" + "\n".join(out) + "\n"
    )


def masked(text: str) -> str:
    return re.sub(r"^bind_pw = .*$", "bind_pw = ********", text, flags=re.MULTILINE)
