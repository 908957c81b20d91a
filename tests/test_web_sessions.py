"""The dashboard's access (docs/access.md): it calls the api with its own credential, so a script draining its
token cannot starve it; sign-in with a read token gives a dashboard without change controls; the Access page makes
a token whose secret shows once and revokes it; the Audit page lists changes; a session ends for good on sign-out,
on revocation of its token and when API_KEY changes, whatever cookie is replayed."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.conftest import ADMIN_KEY, web_env_for
from tests.support.keys import fake_openai_key
from tests.support.processes import running_api
from tests.test_web_access import LOGIN, another_browser, csrf_of, dashboard, web_settings

SECRET_IN_PAGE = re.compile(r'data-testid="token-secret">(cg_[^<]+)<')


async def store_key(api_url: str) -> None:
    async with httpx.AsyncClient() as client:
        body = {"label": "prod", "api_key": fake_openai_key()}
        assert (await client.post(api_url + "/keys", json=body, headers={"X-API-Key": ADMIN_KEY})).status_code == 201


async def sign_in(client: httpx.AsyncClient, credential: str) -> httpx.Response:
    return await client.post(LOGIN, data={"api_key": credential, "csrf_token": await csrf_of(client)})


async def create_token(client: httpx.AsyncClient, name: str, *scopes: str, **fields: str) -> str:
    csrf = await csrf_of(client, "/dashboard/access")
    page = await client.post(
        "/dashboard/access", data={"name": name, "scopes": list(scopes), "csrf_token": csrf, **fields}
    )
    assert page.status_code == 200, page.text
    match = SECRET_IN_PAGE.search(page.text)
    assert match, page.text
    return match.group(1)


async def test_tokens_are_made_shown_once_and_revoked_in_the_access_page(
    api_env: dict[str, str], tmp_path: Path
) -> None:
    with running_api(api_env, tmp_path / "api.log") as api:
        async with dashboard(web_settings(web_env_for(api_env, api.url))) as admin:
            assert (await sign_in(admin, ADMIN_KEY)).status_code == 303
            secret = await create_token(admin, "checkout", "ingest", sources="//checkout/*\n//pay", rpm="600")
            page = (await admin.get("/dashboard/access")).text
            assert "checkout" in page and secret[:19] in page and secret not in page  # the prefix only, from now on
            assert "//checkout/*, //pay" in page and "600/min" in page
            bad = await admin.post(
                "/dashboard/access", data={"name": "", "csrf_token": await csrf_of(admin, "/dashboard/access")}
            )
            assert (
                bad.status_code == 422 and "Some values were not accepted" not in bad.text
            ) or "field-error" in bad.text
            token_id = re.search(r'data-token-id="(\d+)"', page).group(1)  # type: ignore[union-attr]
            revoked = await admin.post(
                f"/dashboard/access/{token_id}/revoke", data={"csrf_token": await csrf_of(admin, "/dashboard/access")}
            )
            assert revoked.status_code == 303
            assert "revoked" in (await admin.get("/dashboard/access")).text
            async with httpx.AsyncClient() as direct:
                assert (await direct.get(api.url + "/keys", headers={"X-API-Key": secret})).status_code == 401
            audit = (await admin.get("/dashboard/audit")).text
            assert f"/tokens/{token_id}" in audit and "dashboard: admin (API_KEY)" in audit and secret not in audit


async def test_a_read_token_signs_in_to_a_dashboard_without_change_controls(
    api_env: dict[str, str], tmp_path: Path
) -> None:
    with running_api(api_env, tmp_path / "api.log") as api:
        await store_key(api.url)
        async with dashboard(web_settings(web_env_for(api_env, api.url))) as admin:
            await sign_in(admin, ADMIN_KEY)
            viewer_token = await create_token(admin, "viewer", "read")
            ingest_token = await create_token(admin, "pipeline", "ingest")
            async with another_browser(admin) as viewer:
                refused = await sign_in(viewer, ingest_token)
                assert refused.status_code == 401 and "nor a live admin or read token" in refused.text
                assert (await sign_in(viewer, viewer_token)).status_code == 303
                keys = await viewer.get("/dashboard/keys")
                assert keys.status_code == 200 and "prod" in keys.text
                assert "Add key" not in keys.text and "Delete…" not in keys.text and "read-only" in keys.text
                assert "/dashboard/access" not in keys.text
                change = await viewer.post(
                    "/dashboard/keys",
                    data={
                        "label": "x",
                        "api_key": fake_openai_key(),
                        "csrf_token": await csrf_of(viewer, "/dashboard/keys"),
                    },
                )
                assert change.status_code == 403 and "can only look" in change.text
                access = await viewer.get("/dashboard/access")
                assert access.status_code == 403 and "cg_" not in access.text


async def test_a_session_ends_for_good_on_sign_out_revocation_and_a_new_api_key(
    api_env: dict[str, str], tmp_path: Path
) -> None:
    with running_api(api_env, tmp_path / "api.log") as api:
        async with dashboard(web_settings(web_env_for(api_env, api.url))) as admin:
            await sign_in(admin, ADMIN_KEY)
            viewer_token = await create_token(admin, "viewer", "read")

            async with another_browser(admin) as viewer:  # signed out: a cookie copied before is worthless
                await sign_in(viewer, viewer_token)
                copied = dict(viewer.cookies)
                assert (await viewer.get("/dashboard/keys")).status_code == 200
                await viewer.post("/dashboard/logout", data={"csrf_token": await csrf_of(viewer, "/dashboard/keys")})
            async with another_browser(admin) as replay:
                replay.cookies.update(copied)
                replayed = await replay.get("/dashboard/keys")
                assert replayed.status_code == 303 and replayed.headers["location"].startswith(LOGIN)

            async with another_browser(admin) as viewer:  # the token revoked: its session ends with it
                await sign_in(viewer, viewer_token)
                assert (await viewer.get("/dashboard/keys")).status_code == 200
                token_id = re.search(r'data-token-id="(\d+)"', (await admin.get("/dashboard/access")).text).group(1)  # type: ignore[union-attr]
                await admin.post(
                    f"/dashboard/access/{token_id}/revoke",
                    data={"csrf_token": await csrf_of(admin, "/dashboard/access")},
                )
                ended = await viewer.get("/dashboard/keys")
                assert ended.status_code == 303 and ended.headers["location"].startswith(LOGIN)
            admin_cookie = dict(admin.cookies)

    rotated = {**api_env, "API_KEY": ADMIN_KEY + "-rotated"}  # API_KEY changed: admin sessions end
    with running_api(rotated, tmp_path / "api2.log") as api:
        async with dashboard(web_settings(web_env_for(rotated, api.url))) as admin:
            admin.cookies.update(admin_cookie)
            ended = await admin.get("/dashboard/keys")
            assert ended.status_code == 303 and ended.headers["location"].startswith(LOGIN)


async def test_a_script_draining_its_token_cannot_starve_the_dashboard(api_env: dict[str, str], tmp_path: Path) -> None:
    env = {**api_env, "RATE_LIMIT_RPM": "60", "RATE_LIMIT_BURST": "60"}  # the seed's defaults
    with running_api(env, tmp_path / "api.log") as api:
        admin_headers = {"X-API-Key": ADMIN_KEY}
        await store_key(api.url)
        async with httpx.AsyncClient(base_url=api.url) as client:
            script = await client.post("/tokens", json={"name": "script", "scopes": ["read"]}, headers=admin_headers)
            script_headers = {"X-API-Key": script.json()["token"]}
            statuses = [(await client.get("/keys", headers=script_headers)).status_code for _ in range(70)]
            admin_statuses = [(await client.get("/keys", headers=admin_headers)).status_code for _ in range(70)]
        assert statuses[-1] == 429 and admin_statuses[-1] == 429  # both drained
        async with dashboard(web_settings(web_env_for(env, api.url))) as browser:
            await sign_in(browser, ADMIN_KEY)
            for _ in range(5):
                for path, text in (("/dashboard", "Spend"), ("/dashboard/keys", "prod"), ("/dashboard/usage", "Usage")):
                    page = await browser.get(path)
                    assert page.status_code == 200 and text in page.text, path
                    assert "rate limiting" not in page.text, path
