"""The `alive` client starts with what the command needs: `--help` loads no gRPC, JWT, rich
or numpy (their imports were most of its start-up time)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("grpc", "jwt", "rich", "numpy", "cryptography", "google.protobuf", "importlib.metadata")

SHOW_MODULES = """
import json, sys
from alive_service.cli import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded_by(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", SHOW_MODULES, *args], capture_output=True,
                          text=True, timeout=60)
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_alive_help_imports_no_grpc_jwt_rich_or_numpy() -> None:
    modules = loaded_by("--help")
    assert not [m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY]


def test_a_command_help_and_a_usage_error_stay_light_too() -> None:
    for args in (("animate", "--help"), ("report", "x")):
        modules = loaded_by(*args)
        assert "grpc" not in modules and "jwt" not in modules, args
