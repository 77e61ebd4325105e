"""RFC 6238 time-based codes (pyotp) and the enrolment QR code (qrcode, drawn here as SVG:
the secret never goes to any other service, and never into a URL)."""

import hmac
import time

import pyotp
import qrcode
import qrcode.image.svg
from django.utils.safestring import SafeString, mark_safe

STEP_SECONDS = 30
DIGITS = 6
# A code from the step before or after the server's is accepted (clocks a little apart, a code
# typed as it changes); nothing older.
TOLERANCE_STEPS = 1


def new_secret() -> str:
    return pyotp.random_base32()  # 32 base32 characters: 160 bits, as RFC 4226 recommends


def step_at(moment: float | None = None) -> int:
    return int((time.time() if moment is None else moment) // STEP_SECONDS)


def code_for(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def matching_step(secret: str, code: str, moment: float | None = None) -> int | None:
    """The time step (within the tolerance) whose code this is, or None."""
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    now = step_at(moment)
    found = None
    for step in range(now - TOLERANCE_STEPS, now + TOLERANCE_STEPS + 1):
        if hmac.compare_digest(code_for(secret, step), code):
            found = step  # no early exit: the time taken says nothing about which step matched
    return found


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(name=account, issuer_name=issuer)


def qr_code_svg(text: str) -> SafeString:
    """An inline <svg> of the QR code: only path data and fixed attributes, no style (CSP)."""
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=4)
    svg = image.to_string(encoding="unicode")
    return mark_safe(svg.replace("<svg ", '<svg role="img" aria-label="QR code for your authenticator app" ', 1))  # noqa: S308


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
