"""Checks shared by the forms of several apps, and the helpers of management commands' forms."""

from pathlib import Path

from django import forms


def reject_control_characters(value: str) -> None:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise forms.ValidationError("Control characters are not allowed.")


def read_secret_file(path_text: str) -> str:
    """A one-line secret from a file (service passwords). The error never quotes the content."""
    reject_control_characters(path_text)
    path = Path(path_text)
    if not path.is_absolute():
        raise forms.ValidationError("Give an absolute path.")
    try:
        content = path.read_text()
    except (OSError, UnicodeDecodeError):
        raise forms.ValidationError(f"Cannot read {path_text}.") from None
    secret = content.removesuffix("\n")
    if not secret or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in secret):
        raise forms.ValidationError(f"{path_text} must hold one line without spaces or control characters.")
    return secret


def errors_text(form: forms.Form) -> str:
    """A form's errors on one line, for management commands."""
    return "; ".join(f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items())
