"""Master key rotation, and refusal to start with a master key that opens nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import psycopg

from cg_common.crypto import KeyCipher, new_master_key
from tests.conftest import api_client, settings_from
from tests.support.keys import fake_openai_key
from tests.support.processes import cg_api_command, running_api


def stored_ciphertexts(database_url: str) -> list[bytes]:
    with psycopg.connect(database_url) as conn:
        return [bytes(r[0]) for r in conn.execute("SELECT ciphertext FROM api_keys ORDER BY id")]


def run_cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cg_api_command(), *args],
        env={"PATH": os.environ["PATH"], **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_rotation_moves_every_key_to_the_new_master_key(
    api_env: dict[str, str], master_key: str, tmp_path: Path
) -> None:
    plaintexts = [fake_openai_key() for _ in range(3)]
    async with api_client(settings_from(api_env)) as client:
        for n, plaintext in enumerate(plaintexts):
            assert (await client.post("/keys", json={"label": f"k{n}", "api_key": plaintext})).status_code == 201

    new_key = new_master_key()
    result = run_cli({**api_env, "MASTER_KEY": f"{new_key},{master_key}"}, "rotate-master-key", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "rotated 3 stored keys and webhook secrets" in result.stdout

    old_only, new_only = KeyCipher([master_key]), KeyCipher([new_key])
    for ciphertext, plaintext in zip(stored_ciphertexts(api_env["DATABASE_URL"]), plaintexts, strict=True):
        assert not old_only.can_decrypt(ciphertext)
        assert new_only.decrypt(ciphertext) == plaintext

    # The old key can now be dropped: the api starts and serves with the new one alone.
    with running_api({**api_env, "MASTER_KEY": new_key}, tmp_path / "api.log") as api:
        async with httpx.AsyncClient() as client:
            listed = (await client.get(api.url + "/keys", headers={"X-API-Key": api_env["API_KEY"]})).json()
    assert len(listed) == 3


async def test_wrong_master_key_is_refused_at_start(api_env: dict[str, str], tmp_path: Path) -> None:
    async with api_client(settings_from(api_env)) as client:
        await client.post("/keys", json={"label": "k", "api_key": fake_openai_key()})
    result = run_cli({**api_env, "MASTER_KEY": new_master_key()}, "serve", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "invalid configuration: MASTER_KEY: MASTER_KEY opens none of the 1 stored keys checked: it is the wrong key "
        "(to rotate, list the new key first and the old one after it, comma-separated)"
    )


async def test_rotation_reports_keys_no_master_key_opens(
    api_env: dict[str, str], master_key: str, tmp_path: Path
) -> None:
    async with api_client(settings_from(api_env)) as client:
        await client.post("/keys", json={"label": "k", "api_key": fake_openai_key()})
    result = run_cli({**api_env, "MASTER_KEY": new_master_key()}, "rotate-master-key", cwd=tmp_path)
    assert result.returncode == 1
    assert (
        "rotated 0 stored keys and webhook secrets to the first MASTER_KEY; 1 could not be decrypted" in result.stdout
    )
    # Nothing was lost: the original key still opens the row.
    assert KeyCipher([master_key]).can_decrypt(stored_ciphertexts(api_env["DATABASE_URL"])[0])
