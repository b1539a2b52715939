"""Node tools the tests use (buf, the grpc-js client), installed from their lock files."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from pathlib import Path

import pytest

HAVE_NODE = bool(shutil.which("node") and shutil.which("npm"))
needs_node = pytest.mark.skipif(not HAVE_NODE, reason="node and npm are needed")


def npm_ci(folder: Path) -> None:
    """Install a folder's pinned packages with ``npm ci`` unless they are there already
    (under a lock: parallel test runs share the folder)."""
    lock = json.loads((folder / "package-lock.json").read_text())
    wanted = {name.removeprefix("node_modules/"): meta["version"]
              for name, meta in lock["packages"].items()
              if name.startswith("node_modules/") and not meta.get("optional")}

    def installed() -> bool:
        for name, version in wanted.items():
            meta = folder / "node_modules" / name / "package.json"
            if not meta.exists() or json.loads(meta.read_text())["version"] != version:
                return False
        return True

    with open(folder / "package.json") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if not installed():
            subprocess.run(["npm", "ci", "--prefix", str(folder), "--no-audit", "--no-fund"],
                           check=True, capture_output=True, timeout=300)
    assert installed(), f"npm ci in {folder} did not install the locked versions"
