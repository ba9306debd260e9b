"""Callback URL tokens: issued and checked without shared state, refused when anything differs."""

from __future__ import annotations

import re
from typing import Any

import pytest

from airflow_provider_captaindata.callbacks import tokens
from airflow_provider_captaindata.exceptions import CaptainDataConfigError

SECRET = "s3cret-for-tests"
KEY = "a1b2c3d4e5f60718293a4b5c"
NOW = 1_800_000_000.0


def parts(url: str) -> tuple[str, str, str]:
    key, expires, token = url.rsplit("/", 3)[1:]
    return key, expires, token


def test_url_shape_and_good_token() -> None:
    url = tokens.callback_url_for("https://airflow.example.com/captaindata/", SECRET, KEY, now=NOW)
    assert re.fullmatch(
        r"https://airflow\.example\.com/captaindata/v1/[0-9a-f]{24}/\d+/[A-Za-z0-9_-]{43}", url
    ), url
    key, expires, token = parts(url)
    assert key == KEY
    assert int(expires) == int(NOW + 7 * 86400)
    assert "=" not in token
    assert tokens.verify(SECRET, key, expires, token, now=NOW)
    assert tokens.verify(SECRET, key, int(expires), token, now=NOW)
    assert tokens.check(SECRET, key, expires, token, now=NOW) == "ok"


def test_deterministic_for_the_same_inputs() -> None:
    first = tokens.callback_url_for("http://h", SECRET, KEY, now=NOW, ttl_seconds=60)
    assert first == tokens.callback_url_for("http://h", SECRET, KEY, now=NOW, ttl_seconds=60)


def test_wrong_secret_or_token() -> None:
    key, expires, token = parts(tokens.callback_url_for("http://h", SECRET, KEY, now=NOW))
    assert not tokens.verify("another-secret", key, expires, token, now=NOW)
    assert tokens.check("another-secret", key, expires, token, now=NOW) == "invalid"
    flipped = ("A" if token[0] != "A" else "B") + token[1:]
    assert tokens.check(SECRET, key, expires, flipped, now=NOW) == "invalid"
    assert not tokens.verify(SECRET, key, expires, "", now=NOW)
    assert not tokens.verify(SECRET, key, expires, token + "A", now=NOW)
    assert not tokens.verify("", key, expires, token, now=NOW)


def test_expired() -> None:
    key, expires, token = parts(tokens.callback_url_for("http://h", SECRET, KEY, now=NOW, ttl_seconds=60))
    assert tokens.verify(SECRET, key, expires, token, now=NOW + 59)
    assert tokens.check(SECRET, key, expires, token, now=NOW + 60) == "expired"
    assert not tokens.verify(SECRET, key, expires, token, now=NOW + 3600)
    # Moving the expiry forward breaks the signature: an expired URL cannot be revived.
    assert tokens.check(SECRET, key, str(int(expires) + 86400), token, now=NOW + 3600) == "invalid"


def test_tampered_launch_key() -> None:
    key, expires, token = parts(tokens.callback_url_for("http://h", SECRET, KEY, now=NOW))
    other = "0" * 24
    assert tokens.check(SECRET, other, expires, token, now=NOW) == "invalid"
    assert tokens.check(SECRET, key[:-1] + ("0" if key[-1] != "0" else "1"), expires, token, now=NOW) == (
        "invalid"
    )


@pytest.mark.parametrize(
    "bad_key",
    [
        "A1B2C3D4E5F60718293A4B5C",  # uppercase
        "a1b2c3d4e5f60718293a4b5",  # 23
        "a1b2c3d4e5f60718293a4b5c0",  # 25
        "g1b2c3d4e5f60718293a4b5c",  # not hex
        "../../../../etc/passwd000",
        "a1b2c3d4e5f60718293a4b5c\n",
        "",
    ],
)
def test_non_hex_launch_key_is_refused_first(bad_key: str) -> None:
    with pytest.raises(CaptainDataConfigError, match="launch_key"):
        tokens.callback_url_for("http://h", SECRET, bad_key, now=NOW)
    _, expires, token = parts(tokens.callback_url_for("http://h", SECRET, KEY, now=NOW))
    assert tokens.check(SECRET, bad_key, expires, token, now=NOW) == "malformed"
    assert not tokens.verify(SECRET, bad_key, expires, token, now=NOW)


@pytest.mark.parametrize("expires", ["", "-5", "1e9", "12345678901234", " 123", "١٢٣"])
def test_malformed_expiry(expires: str) -> None:
    _, _, token = parts(tokens.callback_url_for("http://h", SECRET, KEY, now=NOW))
    assert tokens.check(SECRET, KEY, expires, token, now=NOW) == "malformed"


def test_non_ascii_token_does_not_raise() -> None:
    _, expires, _ = parts(tokens.callback_url_for("http://h", SECRET, KEY, now=NOW))
    assert tokens.check(SECRET, KEY, expires, "é" * 43, now=NOW) == "malformed"


def test_issuing_needs_a_secret_and_an_url() -> None:
    with pytest.raises(CaptainDataConfigError, match="secret"):
        tokens.callback_url_for("http://h", "", KEY)
    with pytest.raises(CaptainDataConfigError, match="callback_base_url"):
        tokens.callback_url_for("airflow.example.com", SECRET, KEY)
    with pytest.raises(CaptainDataConfigError, match="ttl_seconds"):
        tokens.callback_url_for("http://h", SECRET, KEY, ttl_seconds=0)


def test_callback_settings_are_required_before_a_launch() -> None:
    from pydantic import SecretStr

    from airflow_provider_captaindata.client.settings import ConnectionSettings

    def settings(**extra: Any) -> ConnectionSettings:
        return ConnectionSettings(
            conn_id="cd", api_key=SecretStr("k"), project_uid=None, v3_base_url="x", v4_base_url="y", **extra
        )

    full = settings(
        callback_base_url="https://a.example/captaindata",
        callback_secret=SecretStr(SECRET),
        callback_storage="s3://b/c",
    )
    assert tokens.require_callback_settings(full) == ("https://a.example/captaindata", SECRET, "s3://b/c")
    with pytest.raises(CaptainDataConfigError, match="callback_secret, callback_storage") as error:
        tokens.require_callback_settings(settings(callback_base_url="https://a.example"))
    assert "'cd'" in str(error.value)
