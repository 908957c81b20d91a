"""A change the api acknowledged is visible to the very next request: the transaction commits before the response
is sent. (FastAPI ends `yield` dependencies after sending by default; a client reading right after a 2xx, as the
dashboard does after every change, then saw the old state now and then.)"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import ADMIN_KEY
from tests.support.keys import fake_openai_key
from tests.support.processes import running_api


def test_each_acknowledged_change_is_read_back_at_once(api_env: dict[str, str], tmp_path: Path) -> None:
    with (
        running_api(api_env, tmp_path / "api.log") as api,
        httpx.Client(base_url=api.url, headers={"X-API-Key": ADMIN_KEY}, timeout=10) as client,
    ):
        for round_ in range(15):
            created = client.post("/keys", json={"label": f"rw {round_}", "api_key": fake_openai_key()})
            assert created.status_code == 201
            key_id = created.json()["id"]
            assert key_id in [k["id"] for k in client.get("/keys").json()]
            assert client.patch(f"/keys/{key_id}/active", json={"active": False}).status_code == 200
            assert [k["active"] for k in client.get("/keys").json() if k["id"] == key_id] == [False]
            assert client.delete(f"/keys/{key_id}").status_code == 204
            assert key_id not in [k["id"] for k in client.get("/keys").json()]
