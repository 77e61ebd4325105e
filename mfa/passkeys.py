"""WebAuthn ceremonies (py_webauthn): options for the browser, and checking what it sends
back. The challenge of a ceremony lives in the server-side session and is used once.

The relying party is WEBAUTHN_RP_ID, or the host name the browser used (ALLOWED_HOSTS has
vetted it); the expected origin is the scheme and host of this request. A phishing site that
relays the ceremony shows its own origin in the signed client data, and is refused.
"""

import ipaddress
import json
import time
from dataclasses import dataclass

import webauthn
from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.utils.crypto import salted_hmac
from webauthn.helpers import bytes_to_base64url, parse_authentication_credential_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

CHALLENGE_KEY = "mfa_webauthn_challenge"
CEREMONY_SECONDS = 300
TIMEOUT_MS = 120_000
MAX_CREDENTIAL_JSON = 64 * 1024
_MALFORMED = (WebAuthnException, ValueError, TypeError, KeyError, AttributeError)


class PasskeyRefused(Exception):
    """The browser's answer does not prove possession of a registered passkey."""


@dataclass(frozen=True)
class StoredPasskey:
    credential_id: str  # base64url
    public_key: bytes
    sign_count: int
    transports: list[str]


@dataclass(frozen=True)
class NewPasskey:
    credential_id: str
    public_key: bytes
    sign_count: int
    transports: list[str]


def relying_party_id(request: HttpRequest) -> str:
    return settings.WEBAUTHN_RP_ID or request.get_host().rsplit(":", 1)[0].strip("[]")


def usable_here(request: HttpRequest) -> bool:
    """Browsers refuse an IP address as relying party: passkeys need the site's host name."""
    try:
        ipaddress.ip_address(relying_party_id(request))
    except ValueError:
        return True
    return False


def _origin(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.get_host()}"


def _user_handle(user: User) -> bytes:
    # Stable per person and meaningless outside this site (no name or address in it).
    return salted_hmac("mailadmin.mfa.user-handle", str(user.pk), algorithm="sha256").digest()


def _descriptors(passkeys: list[StoredPasskey]) -> list[PublicKeyCredentialDescriptor]:
    known = {t.value for t in AuthenticatorTransport}
    return [
        PublicKeyCredentialDescriptor(
            id=webauthn.base64url_to_bytes(p.credential_id),
            transports=[AuthenticatorTransport(t) for t in p.transports if t in known] or None,
        )
        for p in passkeys
    ]


def _remember(request: HttpRequest, purpose: str, challenge: bytes) -> None:
    request.session[CHALLENGE_KEY] = {"purpose": purpose, "challenge": bytes_to_base64url(challenge), "at": time.time()}


def _take_challenge(request: HttpRequest, purpose: str) -> bytes:
    stored = request.session.pop(CHALLENGE_KEY, None)
    if not isinstance(stored, dict) or stored.get("purpose") != purpose:
        raise PasskeyRefused("This passkey request has expired. Please try again.")
    at = stored.get("at")
    if not isinstance(at, float) or not 0 <= time.time() - at <= CEREMONY_SECONDS:
        raise PasskeyRefused("This passkey request has expired. Please try again.")
    return webauthn.base64url_to_bytes(str(stored.get("challenge", "")))


def registration_options(request: HttpRequest, user: User, existing: list[StoredPasskey]) -> str:
    """The JSON for navigator.credentials.create(); the challenge is kept in the session."""
    options = webauthn.generate_registration_options(
        rp_id=relying_party_id(request),
        rp_name=settings.SECOND_FACTOR_ISSUER,
        user_name=user.get_username(),
        user_id=_user_handle(user),
        user_display_name=user.get_full_name() or user.get_username(),
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=_descriptors(existing),
    )
    _remember(request, "register", options.challenge)
    return webauthn.options_to_json(options)


def verify_registration(request: HttpRequest, credential_json: str) -> NewPasskey:
    challenge = _take_challenge(request, "register")
    if len(credential_json) > MAX_CREDENTIAL_JSON:
        raise PasskeyRefused("The browser's answer is too large.")
    try:
        verified = webauthn.verify_registration_response(
            credential=credential_json,
            expected_challenge=challenge,
            expected_rp_id=relying_party_id(request),
            expected_origin=_origin(request),
        )
        transports = json.loads(credential_json).get("response", {}).get("transports") or []
    except _MALFORMED as exc:
        raise PasskeyRefused("The passkey could not be registered. Please try again.") from exc
    return NewPasskey(
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=[t for t in transports if isinstance(t, str)][:8],
    )


def authentication_options(request: HttpRequest, passkeys: list[StoredPasskey]) -> str:
    """The JSON for navigator.credentials.get() with this person's passkeys."""
    options = webauthn.generate_authentication_options(
        rp_id=relying_party_id(request),
        timeout=TIMEOUT_MS,
        allow_credentials=_descriptors(passkeys),
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    _remember(request, "authenticate", options.challenge)
    return webauthn.options_to_json(options)


def credential_id_of(credential_json: str) -> str:
    """Which passkey the browser used (before its signature is checked)."""
    if len(credential_json) > MAX_CREDENTIAL_JSON:
        raise PasskeyRefused("The browser's answer is too large.")
    try:
        return str(parse_authentication_credential_json(credential_json).id)
    except _MALFORMED as exc:
        raise PasskeyRefused("That was not a passkey answer.") from exc


def verify_authentication(request: HttpRequest, credential_json: str, passkey: StoredPasskey) -> int:
    """Checks the signature against the stored key; the new signature counter."""
    challenge = _take_challenge(request, "authenticate")
    try:
        verified = webauthn.verify_authentication_response(
            credential=credential_json,
            expected_challenge=challenge,
            expected_rp_id=relying_party_id(request),
            expected_origin=_origin(request),
            credential_public_key=passkey.public_key,
            # A counter that does not grow means a cloned authenticator: refused.
            credential_current_sign_count=passkey.sign_count,
        )
    except _MALFORMED as exc:
        raise PasskeyRefused("The passkey was not accepted.") from exc
    return int(verified.new_sign_count)
