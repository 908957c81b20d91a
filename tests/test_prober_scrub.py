"""OpenAI may echo the key back in an error; the prober scrubs the whole message before it shortens it, so no cut
can leave a piece of a key too short to be recognised as one."""

from __future__ import annotations

import pytest

from cg_prober.handler import MAX_ERROR_CHARS, scrub
from cg_prober.upstream import classify
from tests.support.keys import fake_openai_key


@pytest.mark.parametrize("offset", [0, *range(240, 300, 3), *range(440, MAX_ERROR_CHARS, 3), 2000])
@pytest.mark.parametrize("as_json", [True, False])
def test_an_echoed_key_never_survives_wherever_the_cut_falls(offset: int, as_json: bool) -> None:
    key = fake_openai_key()
    echoed = "x" * offset + f"Incorrect API key provided: {key}. You can find your API key at platform."
    if as_json:
        attempt = classify(401, {"error": {"message": echoed, "code": "invalid_api_key"}}, {}, 12.0)
    else:
        attempt = classify(502, None, {}, 12.0, text=echoed)
    stored = scrub(attempt.error_message, key)
    assert stored is not None and len(stored) <= MAX_ERROR_CHARS
    secret = key.removeprefix("sk-proj-")
    pieces = {secret[i : i + 4] for i in range(len(secret) - 3)}
    assert not any(piece in stored for piece in pieces), stored[-120:]
