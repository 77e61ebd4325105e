"""TOTP secrets at rest: sealed (Fernet: AES-CBC + HMAC) under a key derived from SECRET_KEY,
so a copy of the database alone (a backup, a dump) does not give anyone the codes. Keys in
SECRET_KEY_FALLBACKS still open what they sealed, so changing SECRET_KEY the documented way
does not lock anyone out; the next successful code re-seals under the current key."""

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.utils.crypto import salted_hmac

PURPOSE = "mailadmin.mfa.sealing"


class SealBroken(Exception):
    """No configured key opens this value (SECRET_KEY changed without a fallback, or tampering)."""


def _fernet(secret: str) -> Fernet:
    key = salted_hmac(PURPOSE, "totp-secret", secret=secret, algorithm="sha256").digest()
    return Fernet(base64.urlsafe_b64encode(key))


def _keys() -> MultiFernet:
    return MultiFernet([_fernet(secret) for secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)])


def seal(plain: str) -> str:
    return _keys().encrypt(plain.encode()).decode("ascii")


def unseal(sealed: str) -> str:
    try:
        return _keys().decrypt(sealed.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise SealBroken("no configured key opens this secret") from exc


def sealed_under_current_key(sealed: str) -> bool:
    try:
        _fernet(settings.SECRET_KEY).decrypt(sealed.encode("ascii"))
    except (InvalidToken, UnicodeError):
        return False
    return True
