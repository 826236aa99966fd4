"""The log redactor: every spelling of every secret and live token, however many."""

from __future__ import annotations

import json
import logging

import hpack
import pytest

from mitm_oauth.observe.redaction import FEW, REDACTED, Redactor, spellings

TOKEN = "t0k\\en'x\"y-é"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "shown",
    [
        TOKEN,
        repr(TOKEN),  # repr() of text
        repr(TOKEN.encode()),  # repr() of bytes: proxy_debug's spelling
        repr(f"Bearer {TOKEN} and 'quotes'".encode()),
        json.dumps(TOKEN),
        json.dumps(TOKEN, ensure_ascii=False),
        json.dumps({"error_description": f"bad body {json.dumps({'secret': TOKEN})}"}),
    ],
)
def test_every_spelling_is_cut(shown):
    redactor = Redactor()
    redactor.add(TOKEN)
    clean = redactor.redact(f"logged: {shown}")
    assert REDACTED in clean
    assert not any(s in clean for s in spellings(TOKEN) if len(s) >= 4)


@pytest.mark.parametrize("credential_sets", [3, 2000])
def test_every_live_token_is_remembered_however_many(credential_sets):
    """Up to FEW spellings each is looked for; beyond, by its last characters: same answer."""
    redactor = Redactor()
    for n in range(credential_sets):
        redactor.add(f"secret-{n}/+=", f"client-{n}%3Asecret-{n}")
        redactor.add(f"token/{n}-abcdef", keep_for=3600)
    assert redactor.few is (credential_sets < FEW)
    for n in (0, credential_sets // 2, credential_sets - 1):
        assert redactor.redact(f"x token/{n}-abcdef y") == f"x {REDACTED} y"
        assert redactor.redact(f"x secret-{n}%2F%2B%3D y") == f"x {REDACTED} y"
    assert redactor.redact("nothing secret here") == "nothing secret here"


def test_longer_spellings_go_first():
    redactor = Redactor()
    redactor.add("abcd", "abcdefgh")
    assert redactor.redact("abcdefgh abcd") == f"{REDACTED} {REDACTED}"


def test_tokens_are_forgotten_once_they_have_expired_secrets_never():
    clock = Clock()
    redactor = Redactor(clock)
    redactor.add("client-secret")
    redactor.add("token-one", keep_for=60)
    clock.now = 30
    redactor.add("token-two", keep_for=60)
    assert redactor.redact("token-one token-two client-secret") == " ".join([REDACTED] * 3)
    clock.now = 61
    redactor.add("token-three", keep_for=60)  # forgetting happens when something is added
    assert redactor.redact("token-one token-two") == f"token-one {REDACTED}"
    clock.now = 10**9
    redactor.add("token-four", keep_for=60)
    assert redactor.redact("client-secret") == REDACTED


def test_a_log_record_is_redacted_in_place(caplog):
    redactor = Redactor()
    redactor.add("s3cret-value")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "got %s", ("s3cret-value",), None)
    assert redactor.filter(record)
    assert record.getMessage() == f"got {REDACTED}"


@pytest.mark.parametrize("kept", [4, 10, len(TOKEN) - 1])
def test_a_spelling_cut_short_by_a_log_line_limit_is_cut_out_too(kept):
    redactor = Redactor()
    redactor.add(TOKEN)
    assert redactor.redact(f"Authorization: Bearer {TOKEN[:kept]}…") == (
        f"Authorization: Bearer {REDACTED}…"
    )
    assert redactor.redact("Authorization: Bearer…") == "Authorization: Bearer…"


def test_a_header_value_as_http2_compresses_it_is_cut_out():
    header = "Bearer tok-123456789abcdef"
    redactor = Redactor()
    redactor.add(header, header=True)
    frame = hpack.Encoder().encode([(b"authorization", header.encode())])
    assert REDACTED in redactor.redact(f"SendData(server, {frame!r})")


def test_a_token_that_is_the_whole_header_value_is_cut_out_of_http2_frames_too():
    """`header_value: "{access_token}"`: the value was known, as a token, before it was a header."""
    redactor = Redactor()
    redactor.add("tok-123456789abcdef", keep_for=60)
    redactor.add("tok-123456789abcdef", keep_for=60, header=True)
    frame = hpack.Encoder().encode([(b"x-api-token", b"tok-123456789abcdef")])
    assert REDACTED in redactor.redact(f"SendData(server, {frame!r})")
