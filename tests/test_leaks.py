"""The plaintext key appears in no response, no log line, no database column and no Redis entry."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.keys import fake_openai_key
from tests.support.leaks import database_holds, redis_holds
from tests.support.processes import running_api


def test_plaintext_key_is_never_emitted_or_stored(api_env: dict[str, str], tmp_path: Path) -> None:
    plaintext = fake_openai_key()
    env = {**api_env, "LOG_LEVEL": "debug", "DEBUG": "true", "RATE_LIMIT_BURST": "15", "RATE_LIMIT_RPM": "60"}
    admin = {"X-API-Key": env["API_KEY"]}
    responses: list[httpx.Response] = []
    with running_api(env, tmp_path / "api.log") as api, httpx.Client(base_url=api.url, timeout=10) as client:

        def call(method: str, path: str, **kwargs: object) -> httpx.Response:
            response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
            responses.append(response)
            return response

        created = call("POST", "/keys", headers=admin, json={"label": "leak", "api_key": plaintext})
        key_id = created.json()["id"]
        call("POST", "/keys", headers=admin, json={"label": "again", "api_key": plaintext})  # 409
        call("POST", "/keys", headers=admin, json={"label": "bad", "api_key": plaintext + "!"})  # 422
        call("POST", "/keys", headers=admin, json={"label": plaintext, "api_key": 12})  # 422, key in a label
        call("POST", "/keys", headers=admin, content=b'{"api_key": "' + plaintext.encode() + b'"')  # bad JSON
        call("GET", "/keys", headers=admin)
        call("PATCH", f"/keys/{key_id}/active", headers=admin, json={"active": False})
        call("GET", "/metrics", headers=admin)
        call("GET", "/metrics", headers={**admin, "Accept": "text/plain"})
        call("GET", "/ready", headers=admin)
        call("GET", "/dashboard", headers=admin, follow_redirects=False)
        call("GET", "/ping")
        call("GET", "/openapi.json")
        call("GET", f"/keys?api_key={plaintext}", headers={"X-API-Key": plaintext})  # a key sent as admin key
        call("DELETE", f"/keys/{key_id}", headers=admin)
        for _ in range(20):  # to the rate limit and past it
            call("GET", "/keys", headers={"X-API-Key": plaintext})
    log = api.log_text()

    statuses = {r.status_code for r in responses}
    assert {201, 409, 422, 200, 204, 307, 401, 429} <= statuses
    for response in responses:
        assert plaintext not in response.text
        assert plaintext not in str(response.headers)
    assert log.count("\n") > 20, "debug logging produced too little to prove anything"
    assert plaintext not in log
    assert database_holds(env["DATABASE_URL"], plaintext) == []
    assert redis_holds(env["REDIS_URL"], plaintext) == []
