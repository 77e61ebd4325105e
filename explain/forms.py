import re

from django import forms

from handover.forms import SingleLineField
from postfix.render import SAFE_TOKEN

# One address as Postfix looks it up: text on both sides of one @ (not a "@domain" catch-all
# key), and nothing a table key may not hold (postfix/render.py), so a look-up reads one key.
ADDRESS = re.compile(r"[^@]{1,64}@[^@]{1,255}\Z")
NOT_AN_ADDRESS = "Give one mail address (name@domain)."
NOT_OWN = "You can explain your own addresses only: your mailbox and your aliases."


class ExplainForm(forms.Form):
    address = SingleLineField(
        label="Address",
        max_length=320,
        help_text="Any address: what happens to mail to it and from it, as the mail server's tables say now.",
    )

    def clean_address(self) -> str:
        value = str(self.cleaned_data["address"]).strip().lower()
        if not ADDRESS.match(value) or not SAFE_TOKEN.fullmatch(value):
            raise forms.ValidationError(NOT_AN_ADDRESS, code="invalid")
        return value
