"""The API's contract: buf lint with the default rules, and no breaking change against the
released v1 (tools/buf/alive-v1.binpb; `make buf-baseline` moves it at a release)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.npm import needs_node, npm_ci

ROOT = Path(__file__).parent.parent
BUF_DIR = ROOT / "tools" / "buf"


def buf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    npm_ci(BUF_DIR)
    return subprocess.run([str(BUF_DIR / "node_modules" / ".bin" / "buf"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@needs_node
def test_the_proto_passes_buf_lint_with_the_default_rules() -> None:
    done = buf("lint")
    assert done.returncode == 0, done.stdout + done.stderr


@needs_node
def test_the_proto_makes_no_breaking_change_to_the_released_v1() -> None:
    done = buf("breaking", "--against", "tools/buf/alive-v1.binpb")
    assert done.returncode == 0, done.stdout + done.stderr


@needs_node
def test_buf_breaking_catches_a_renumbered_field(tmp_path: Path) -> None:
    """The guard works: renumbering a field is reported against the baseline."""
    changed = tmp_path / "proto" / "alive" / "v1"
    changed.mkdir(parents=True)
    source = (ROOT / "proto" / "alive" / "v1" / "alive.proto").read_text()
    assert source.count("int64 length = 3;") == 1
    (changed / "alive.proto").write_text(source.replace("int64 length = 3;", "int64 length = 5;"))
    (tmp_path / "buf.yaml").write_text((ROOT / "buf.yaml").read_text())
    done = buf("breaking", "--against", str(BUF_DIR / "alive-v1.binpb"), cwd=tmp_path)
    assert done.returncode != 0 and "GetVideoRequest" in done.stdout, done.stdout
