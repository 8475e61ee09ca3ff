"""The cluster secret: weak ones are refused, with an error that says what to do."""

import os
import secrets
import subprocess
import sys

import pytest

from transport import MIN_SECRET_BITS, TcpTransport, WeakSecretError, check_secret, new_secret
from transport._secret import secret_bits


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "summer2024",
        "correct horse battery staple",  # a phrase: not the form of random bits
        "a" * 64,  # long, but one character
        "abababababababababababababababab",
        "0123456789abcdef0123456789abcde",  # 31 hex characters: 124 bits
        "CorrectHorseBattery",  # 19 base64 characters
        "correcthorsebatterystaplexyz",  # one case, no digits
        "summer2024summer2024summer2024summer2024",  # repeats itself
        b"\x00" * 32,
        "summer2024 caf\u00e9",  # one non-ASCII letter is not key material
        "summer2024\twinter",
        "Sommer2024M\u00fcnchen",
        "abcdefghijklmnopqrstuvwxyz0",  # the alphabet
        "0123456789abcdeffedcba9876543210",
    ],
)
def test_weak_secrets_are_refused_with_advice(secret: str | bytes) -> None:
    with pytest.raises(WeakSecretError, match=r"128 are needed.*chorus secret|empty"):
        check_secret(secret)
    with pytest.raises(ValueError, match="cluster secret"):
        TcpTransport("a", secret=secret)


def test_generated_secrets_are_accepted() -> None:
    for _ in range(200):
        secret = new_secret()
        assert check_secret(secret) == secret.encode()
        check_secret(secrets.token_hex(16))  # openssl rand -hex 16
        check_secret(secrets.token_urlsafe(16))  # 22 characters
        check_secret(secrets.token_bytes(16))  # a binary key file
        check_secret(new_secret() + "\n")  # read from a file
    assert secret_bits(new_secret().encode()) == 256 >= MIN_SECRET_BITS


def test_chorus_secret_prints_a_fresh_strong_secret() -> None:
    def run() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "flags.cli", "secret"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    first, second = run(), run()
    assert first != second
    assert len(first.strip()) == 64
    check_secret(first)


def test_chorus_serve_refuses_a_weak_secret() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flags.cli", "serve", "--node-id", "a"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "CHORUS_SECRET": "summer2024", "CHORUS_TOKEN": "t" * 32},
    )
    assert done.returncode == 2
    assert "at least 128" in done.stderr
    assert "chorus secret" in done.stderr
