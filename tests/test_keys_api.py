"""Key management through HTTP, checked against what Postgres really holds."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from cg_common.crypto import KeyCipher, fingerprint
from tests.support.keys import fake_openai_key


async def test_key_lifecycle(api: httpx.AsyncClient, database_url: str, master_key: str) -> None:
    plaintext = fake_openai_key()
    created = await api.post("/keys", json={"label": "billing bot", "api_key": plaintext})
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["masked_key"] == "sk-proj-…" + plaintext[-4:]
    assert record["label"] == "billing bot"
    assert record["kind"] == "standard"
    assert record["active"] is True
    assert record["fingerprint"] == fingerprint(plaintext)
    assert record["last_probe_at"] is None
    assert plaintext not in created.text

    listed = (await api.get("/keys")).json()
    assert [k["id"] for k in listed] == [record["id"]]

    toggled = await api.patch(f"/keys/{record['id']}/active", json={"active": False})
    assert toggled.status_code == 200
    assert toggled.json()["active"] is False

    deleted = await api.delete(f"/keys/{record['id']}")
    assert deleted.status_code == 204
    assert (await api.get("/keys")).json() == []
    assert (await api.delete(f"/keys/{record['id']}")).status_code == 404

    # The row stays for the usage history, without its secret.
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT ciphertext, deleted_at FROM api_keys WHERE id = %s", (record["id"],)).fetchone()
    assert row is not None
    assert row[0] is None
    assert row[1] is not None


async def test_stored_row_is_ciphertext_the_master_key_opens(
    api: httpx.AsyncClient, database_url: str, master_key: str
) -> None:
    plaintext = fake_openai_key("sk-admin-")
    created = await api.post("/keys", json={"label": "org", "api_key": plaintext, "kind": "admin"})
    assert created.status_code == 201
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT ciphertext, last4, prefix FROM api_keys").fetchone()
    assert row is not None
    ciphertext = bytes(row[0])
    assert plaintext.encode() not in ciphertext
    assert KeyCipher([master_key]).decrypt(ciphertext) == plaintext
    assert (row[1], row[2]) == (plaintext[-4:], "sk-admin-")


async def test_duplicate_key_is_409_and_can_be_added_again_after_delete(api: httpx.AsyncClient) -> None:
    plaintext = fake_openai_key()
    first = await api.post("/keys", json={"label": "a", "api_key": plaintext})
    duplicate = await api.post("/keys", json={"label": "b", "api_key": plaintext})
    assert duplicate.status_code == 409
    assert duplicate.json() == {"detail": "this key is already stored"}
    await api.delete(f"/keys/{first.json()['id']}")
    again = await api.post("/keys", json={"label": "c", "api_key": plaintext})
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]


@pytest.mark.parametrize(
    ("body", "bad_field"),
    [
        ({"label": "x"}, "api_key"),
        ({"api_key": "sk-" + "a" * 40}, "label"),
        ({"label": "", "api_key": "sk-" + "a" * 40}, "label"),
        ({"label": "x\x00y", "api_key": "sk-" + "a" * 40}, "label"),
        ({"label": "x", "api_key": "not-an-openai-key-at-all"}, "api_key"),
        ({"label": "x", "api_key": "sk-short"}, "api_key"),
        ({"label": "x", "api_key": "sk-" + "a" * 40, "kind": "root"}, "kind"),
        ({"label": "x", "api_key": "sk-" + "a" * 40, "extra": 1}, "extra"),
        ({"label": 5, "api_key": "sk-" + "a" * 40}, "label"),
    ],
)
async def test_bad_key_bodies_are_422_naming_the_field(
    api: httpx.AsyncClient, body: dict[str, object], bad_field: str
) -> None:
    response = await api.post("/keys", json=body)
    assert response.status_code == 422
    fields = [item["loc"][-1] for item in response.json()["detail"]]
    assert bad_field in fields
    assert '"input"' not in response.text  # values are never echoed back: one could be a key


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("POST", "/keys", b"{not json"),
        ("POST", "/keys", b"[1, 2]"),
        ("POST", "/keys", b""),
        ("PATCH", "/keys/1/active", b'{"active": "maybe"}'),
        ("PATCH", "/keys/0/active", b'{"active": true}'),
        ("PATCH", "/keys/99999999999999999999/active", b'{"active": true}'),
        ("DELETE", "/keys/abc", b""),
    ],
)
async def test_malformed_requests_are_4xx_never_5xx(
    api: httpx.AsyncClient, method: str, path: str, content: bytes
) -> None:
    response = await api.request(method, path, content=content, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert "detail" in response.json()


async def test_unknown_key_is_404(api: httpx.AsyncClient) -> None:
    response = await api.patch("/keys/424242/active", json={"active": True})
    assert response.status_code == 404
    assert response.json() == {"detail": "no key with id 424242"}


async def test_ping_needs_nothing(api: httpx.AsyncClient) -> None:
    api.headers.pop("X-API-Key")
    response = await api.get("/ping")
    assert response.json() == {"status": "ok"}


async def test_ready_reports_each_dependency(api: httpx.AsyncClient) -> None:
    response = await api.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"nats": "ok", "postgres": "ok", "redis": "ok"}}


async def test_dashboard_redirects_to_the_web_service(api: httpx.AsyncClient) -> None:
    response = await api.get("/dashboard")
    assert response.status_code == 307
    assert response.headers["location"] == "http://127.0.0.1:5002/dashboard"
