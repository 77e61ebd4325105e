import random
import string
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounts.cram_md5 import cram_md5_hash, verify_cram_md5

TEST_VECTOR = "{CRAM-MD5}e02d374fde0dc75a17a557039a3a5338c7743304777dccd376f332bee68d2cf6"


def test_matches_dovecot_test_vector() -> None:
    assert cram_md5_hash("test") == TEST_VECTOR


def _generated_passwords(count: int) -> list[str]:
    rng = random.Random(20261122)  # deterministic
    alphabet = string.ascii_letters + string.digits + string.punctuation + " äöüßéñ€漢字🙂"
    passwords = ["a", "x" * 63, "y" * 64, "z" * 65, "ü" * 40, "pässwörd", "€" * 30]
    while len(passwords) < count:
        passwords.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 90))))
    return passwords


@pytest.mark.parametrize("password", _generated_passwords(60))
def test_real_doveadm_accepts_our_hash(password: str) -> None:
    result = subprocess.run(
        ["doveadm", "pw", "-t", cram_md5_hash(password), "-p", password], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "verified" in result.stdout + result.stderr


def test_real_doveadm_hash_verifies_here() -> None:
    for password in _generated_passwords(20)[1:]:
        made = subprocess.run(["doveadm", "pw", "-s", "CRAM-MD5", "-p", password], capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        assert verify_cram_md5(password, made.stdout.strip())


def test_wrong_password_does_not_verify() -> None:
    assert not verify_cram_md5("tesT", TEST_VECTOR)
    assert not verify_cram_md5("test", "{SSHA}abc")
    assert not verify_cram_md5("test", TEST_VECTOR.upper())


@given(st.text(max_size=200))
def test_hash_is_well_formed_for_any_text(password: str) -> None:
    value = cram_md5_hash(password)
    assert value.startswith("{CRAM-MD5}") and len(value) == 10 + 64
    assert verify_cram_md5(password, value)
