"""The `alive` client starts with what the command needs: `--help` loads no gRPC, JWT, rich
or numpy (their imports were most of its start-up time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_animate_parses_its_options_without_pydantic_and_prints_to_a_pipe_without_rich(
    tmp_path: Path,
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"not sent: nothing listens on port 1")
    env = dict(os.environ, ALIVE_ADDR="127.0.0.1:1", ALIVE_TOKEN="x")
    done = subprocess.run([sys.executable, "-c", SHOW_MODULES, "animate", str(photo),
                           "--sky", "1.5", "--seed", "3", "--still", "0.5,0.5"],
                          capture_output=True, text=True, timeout=60, env=env)
    modules = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert "UNAVAILABLE" in done.stderr  # it parsed, and got as far as the call
    assert not [m for m in modules if m.split(".")[0] in ("pydantic", "pydantic_core", "rich")]


def test_plain_parameters_coerce_as_typer_itself_does(tmp_path: Path) -> None:
    import typer.main
    from typer._click import Context
    from typer._click.exceptions import BadParameter
    from typer._coercion import build_runtime_param

    from alive_service.cli import app

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"x")
    raw = {
        str: ["", "a caption", " padded "], int: ["3", "-2", "1.5", "x"],
        float: ["1.5", "2", "-0.25", "1e3", "abc"], Path: [str(photo), str(tmp_path / "no")],
    }
    group = typer.main.get_command(app)
    checked = 0
    for name in ("animate", "get", "list", "report", "share"):
        command = group.commands[name]  # type: ignore[attr-defined]
        ctx = Context(command)
        for param in command.params:
            light = param.get_runtime_param()  # the installed, pydantic-free one
            typer_own = build_runtime_param(param.type_descriptor)
            base = param.type_descriptor.annotation
            kind = next((k for k in raw if k is base or k in getattr(base, "__args__", ())),
                        bool)
            values = [None, *raw.get(kind, ["true", "no", "", "maybe"])]
            if param.multiple or param.nargs == -1:
                values = [None, (), ("0.5,0.5", "line:0,0;1,1")]
            for value in values:
                outcome = []
                for runtime in (light, typer_own):
                    try:
                        outcome.append(runtime.coerce(value, param=param, ctx=ctx))
                    except BadParameter as exc:
                        outcome.append(("refused", exc.message))
                assert outcome[0] == outcome[1], (name, param.name, value, outcome)
                checked += 1
    assert checked > 60
