"""The README's settings reference lists exactly the MAILADMIN_* variables the code reads."""

import os
import re
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SKIPPED_DIRS = {".venv", "var", "node_modules", "test-artifacts", ".git"}

# settings.py reads MAILADMIN_<NAME> through env_str("NAME", ...) and friends; env_secret also
# reads MAILADMIN_<NAME>_FILE.
HELPER_READ = re.compile(r"\benv_(str|int|bool|list|secret)\(\s*\"([A-Z0-9_]+)\"")
# Direct reads elsewhere: os.environ.get("MAILADMIN_X"), os.getenv(...), os.environ["MAILADMIN_X"]
# unless it is being assigned.
ENVIRON_READ = re.compile(
    r"(?:environ\.get|getenv|environ\.setdefault)\(\s*[\"'](MAILADMIN_[A-Z0-9_]+)[\"']"
    r"|environ\[\s*[\"'](MAILADMIN_[A-Z0-9_]+)[\"']\s*\](?!\s*=[^=])"
)
SHELL_READ = re.compile(r"\$\{?(MAILADMIN_[A-Z0-9_]+)")
DOCUMENTED = re.compile(r"`(MAILADMIN_[A-Z0-9_]+)`")


def variables_read_in_python(text: str) -> set[str]:
    found = set()
    for kind, name in HELPER_READ.findall(text):
        found.add(f"MAILADMIN_{name}")
        if kind == "secret":
            found.add(f"MAILADMIN_{name}_FILE")
    for get_name, item_name in ENVIRON_READ.findall(text):
        found.add(get_name or item_name)
    return found


def variables_read_in_shell(text: str) -> set[str]:
    return set(SHELL_READ.findall(text))


def _project_files() -> list[Path]:
    files = []
    for root, dirs, names in os.walk(BASE_DIR):
        dirs[:] = [name for name in dirs if name not in SKIPPED_DIRS]
        files.extend(Path(root) / name for name in names)
    return files


def variables_read_by_code() -> dict[str, str]:
    """Variable name → one file that reads it."""
    readers: dict[str, str] = {}
    shell_dirs = {BASE_DIR / "scripts", BASE_DIR / ".ci"}
    for path in _project_files():
        if path == Path(__file__):
            continue
        if path.suffix == ".py":
            names = variables_read_in_python(path.read_text())
        elif path.parent in shell_dirs and path.suffix == "":
            names = variables_read_in_shell(path.read_text())
        else:
            continue
        for name in names:
            readers.setdefault(name, str(path.relative_to(BASE_DIR)))
    return readers


def settings_reference(readme: str) -> set[str]:
    """Every variable named in the first column of a table under '## Settings'."""
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `MAILADMIN_"):
            first_cell = line.split("|")[1]
            names |= set(DOCUMENTED.findall(first_cell))
    return names


def test_every_variable_the_code_reads_is_in_the_readme_settings_table() -> None:
    documented = settings_reference((BASE_DIR / "README.md").read_text())
    missing = {name: where for name, where in variables_read_by_code().items() if name not in documented}
    assert not missing, f"add these to the README's Settings table: {missing}"


def test_the_readme_settings_table_names_no_variable_the_code_no_longer_reads() -> None:
    documented = settings_reference((BASE_DIR / "README.md").read_text())
    stale = documented - set(variables_read_by_code())
    assert not stale, f"documented in the README's Settings table but read nowhere: {sorted(stale)}"


def test_the_scanner_finds_reads_and_ignores_writes() -> None:
    code = (
        'A = env_int("MAP_RECONCILE_INTERVAL", 30)\n'
        'B = env_secret("SECRET_KEY", "")\n'
        'C = os.environ.get("MAILADMIN_CHROMIUM", "/usr/bin/chromium")\n'
        'D = os.environ["MAILADMIN_STATE_DIR"]\n'
        'os.environ["MAILADMIN_WRITTEN_ONLY"] = "1"\n'
        'env = {"MAILADMIN_PASSED_TO_A_CHILD": "0"}\n'
    )
    assert variables_read_in_python(code) == {
        "MAILADMIN_MAP_RECONCILE_INTERVAL",
        "MAILADMIN_SECRET_KEY",
        "MAILADMIN_SECRET_KEY_FILE",
        "MAILADMIN_CHROMIUM",
        "MAILADMIN_STATE_DIR",
    }
    assert variables_read_in_shell('if [ "${MAILADMIN_CI_INSIDE:-}" != 1 ]; then') == {"MAILADMIN_CI_INSIDE"}


def test_the_table_parser_reads_only_the_first_column_of_the_settings_section() -> None:
    readme = (
        "# x\n\n## Settings\n\n| setting | default | meaning |\n|---|---|---|\n"
        "| `MAILADMIN_A`, `MAILADMIN_B` | `1` | like `MAILADMIN_C` |\n\n"
        "## Production checklist\n\n| `MAILADMIN_D` | x | y |\n"
    )
    assert settings_reference(readme) == {"MAILADMIN_A", "MAILADMIN_B"}
