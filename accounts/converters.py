"""The <uid:...> URL converter: a URL names a person only by a well-formed uid."""

from django.urls import register_converter

from accounts.directory import UID_REGEX


class UidConverter:
    # Django anchors converter patterns itself, and with \Z: "alice%0A" is no uid.
    regex = UID_REGEX

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(UidConverter, "uid")
