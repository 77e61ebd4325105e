from pathlib import Path
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from mailadmin.form_checks import read_secret_file, reject_control_characters


class PostfixApplyForm(forms.Form):
    """manage.py postfix_apply: where the host's Postfix configuration is, and the bind password."""

    config_dir = forms.CharField(max_length=4096)
    ldap_password_file = forms.CharField(max_length=4096, required=False)
    submission = forms.BooleanField(required=False)

    def clean_config_dir(self) -> Path:
        value = self.cleaned_data["config_dir"]
        reject_control_characters(value)
        path = Path(value)
        if not path.is_absolute():
            raise ValidationError("Give an absolute path.")
        missing = [name for name in ("main.cf", "master.cf") if not (path / name).is_file()]
        if missing:
            raise ValidationError(f"{value} has no {' or '.join(missing)}: is Postfix installed there?")
        return path.resolve()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        path = cleaned.get("ldap_password_file") or ""
        try:
            cleaned["ldap_password"] = read_secret_file(path) if path else ""
        except ValidationError as error:
            self.add_error("ldap_password_file", error)
        return cleaned
