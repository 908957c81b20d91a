"""nats-py's private names live in one adapter (`cg_common.nats_internals`), whose start-up check stops a service
with one line when the installed nats-py lacks one of them."""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from packaging.specifiers import SpecifierSet

from cg_common import nats_internals

REPO = Path(__file__).resolve().parents[1]
ADAPTER = REPO / "libs/common/src/cg_common/nats_internals.py"
NAMED_TUPLE_API = {"_make", "_fields", "_replace", "_asdict"}  # public despite the underscore


def test_the_installed_nats_py_has_every_name_and_is_in_the_declared_range() -> None:
    assert nats_internals.missing() == []
    assert version("nats-py") in SpecifierSet(nats_internals.SUPPORTED.removeprefix("nats-py"))
    declared = (REPO / "libs/common/pyproject.toml").read_text()
    assert f'"{nats_internals.SUPPORTED}"' in declared


def test_a_service_stops_at_start_naming_what_nats_py_lacks(api_env: dict[str, str], tmp_path: Path) -> None:
    without = (
        "import nats.aio.client as client\n"
        "del client.Client._parse_header_lines\n"
        "from cg_ledger.cli import main\n"
        "main(['run'])\n"
    )
    env = {key: api_env[key] for key in ("NATS_URL", "DATABASE_URL", "REDIS_URL")}
    done = subprocess.run(
        [sys.executable, "-c", without], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"nats-py {version('nats-py')} lacks Client._parse_header_lines, which cg_common.nats_internals relies on; "
        f"install {nats_internals.SUPPORTED}"
    ]


def test_no_module_but_the_adapter_reaches_into_private_names() -> None:
    """`x._name` on anything but `self` or `cls`, anywhere in the services and libraries, outside the adapter."""
    found = []
    for path in [*REPO.glob("libs/*/src/**/*.py"), *REPO.glob("services/*/src/**/*.py")]:
        if path == ADAPTER:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in NAMED_TUPLE_API
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {ast.unparse(node)}")
    assert found == []
