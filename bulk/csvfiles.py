"""The CSV files of the import and export: an upload parsed into rows (or refused as a whole,
with one message a person understands), and lines written so that a spreadsheet never runs a
cell as a formula. Pure functions: no database, no directory."""

import codecs
import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

# A spreadsheet reads a cell starting with one of these as a formula (CSV injection). Such a
# cell is written with a leading apostrophe, which the import takes off again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SHOWN_VALUE = 60  # characters of a refused value quoted back in a message


class CsvRefused(Exception):
    """The whole file is refused; the message says why, for a person."""


@dataclass(frozen=True)
class Layout:
    columns: tuple[str, ...]
    required: tuple[str, ...]
    # Columns whose values may appear once in a file (compared case-insensitively).
    unique: tuple[str, ...]


USER_HASH_COLUMN = "password_equivalent_hash"
USERS = Layout(
    columns=("uid", "name", "mail", USER_HASH_COLUMN), required=("uid", "name", "mail"), unique=("uid", "mail")
)
ALIASES = Layout(
    columns=("address", "owner", "site", "note", "expires_on", "enabled"),
    required=("address", "owner"),
    unique=("address",),
)
LAYOUTS = {"users": USERS, "aliases": ALIASES}


@dataclass(frozen=True)
class Row:
    line: int  # where the row starts in the file (the header is line 1)
    values: dict[str, str]  # every column of the layout; absent ones are ""


def shown(value: str) -> str:
    value = value if len(value) <= SHOWN_VALUE else value[:SHOWN_VALUE] + "…"
    return repr(value)


def decode(data: bytes) -> str:
    """The file as text: UTF-8 (a byte order mark is allowed) and nothing else."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CsvRefused("The file is UTF-16 text. Save it as “CSV UTF-8” and upload it again.")
    if b"\x00" in data:
        raise CsvRefused("The file holds NUL bytes: it is not a CSV text file. Save it as “CSV UTF-8”.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CsvRefused(
            f"Line {line} is not UTF-8 text (an older spreadsheet encoding?). Save the file as “CSV UTF-8”."
        ) from None


def _unescaped(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell


def _header(cells: list[str], layout: Layout) -> list[str]:
    header = [cell.strip().lower() for cell in cells]
    unknown = [name for name in header if name not in layout.columns]
    if unknown:
        raise CsvRefused(
            f"Line 1 names unknown columns: {', '.join(shown(n) for n in unknown)}. "
            f"The columns are: {', '.join(layout.columns)}."
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise CsvRefused(f"Line 1 names a column twice: {', '.join(repeated)}.")
    missing = [name for name in layout.required if name not in header]
    if missing:
        raise CsvRefused(f"Line 1 lacks the columns {', '.join(missing)} (it must name {', '.join(layout.required)}).")
    return header


def parse(text: str, layout: Layout, max_rows: int) -> list[Row]:
    """The rows of a CSV text with a header line, or CsvRefused for the whole file: unknown,
    repeated or missing columns, a row with more cells than the header, a repeated uid, mail or
    address, too many rows, or text that is not CSV."""
    if not text.strip():
        raise CsvRefused("The file is empty.")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[Row] = []
    seen: dict[str, dict[str, int]] = {column: {} for column in layout.unique}
    try:
        header = _header(next(reader), layout)
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(header):
                raise CsvRefused(f"Line {line} has {len(cells)} cells; line 1 names {len(header)} columns.")
            values = dict.fromkeys(layout.columns, "")
            values.update((name, _unescaped(cell)) for name, cell in zip(header, cells, strict=False))
            for column in layout.unique:
                key = values[column].strip().lower()
                if key in seen[column]:
                    raise CsvRefused(f"Line {line} repeats the {column} {shown(key)} of line {seen[column][key]}.")
                if key:
                    seen[column][key] = line
            rows.append(Row(line=line, values=values))
            if len(rows) > max_rows:
                raise CsvRefused(f"The file has more than {max_rows} rows. Split it into smaller files.")
    except csv.Error as exc:
        raise CsvRefused(f"Line {reader.line_num} is not valid CSV ({exc}).") from None
    if not rows:
        raise CsvRefused("The file has a header line but no rows.")
    return rows


def safe_cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


class _Line:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text = text


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[str]]) -> Iterator[str]:
    """CSV text line by line (for a streamed download); no cell starts a formula."""
    line = _Line()
    writer = csv.writer(line)
    writer.writerow(header)
    yield line.text
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
        yield line.text
