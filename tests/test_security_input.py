"""What users type cannot take over a moderator's terminal, hide text, or outlive its limits.

Rich markup in captions, report details and notes is shown as typed; invisible format
characters that reorder or hide text are refused, while ordinary writing (Persian ZWNJ,
emoji ZWJ sequences, subdivision flags) passes unchanged; tokens have a maximum lifetime
and can be revoked; the database files are private.
"""

# ruff: noqa: F811 - pytest fixtures imported from test_moderation, used as parameters
from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import jwt
import pytest
from typer.testing import CliRunner

from alive_service import auth, moderation, validate
from alive_service.client import AliveClient
from alive_service.mod_cli import app
from alive_service.rpc import RpcError, error_info, pb
from alive_service.store import SqlStore
from tests.conftest import moderator_env

# The storage fixtures of the moderation tests (over conftest's fresh_db).
from tests.test_moderation import a_video, mods, store  # noqa: F401
from tools.harness import ServerProcess

SMALL = pb.AnimateOptions(long_side=256, duration_s=1.0)

# -- Rich markup in what users and moderators typed ------------------------------------------
HOSTILE = "[/] [link=https://evil.example]open me[/link] [bold red]URGENT :fire:"


def test_markup_in_captions_details_and_notes_is_shown_as_typed(
    store: SqlStore, fresh_db: str, tmp_path: Path, mods: dict,
) -> None:
    captioned = a_video(store, owner="bob", caption=HOSTILE)
    store.upsert_report(captioned.id, "u1", "spam", HOSTILE)
    store.upsert_report(captioned.id, "u2", "spam", "right\u202eto left \U000E0041")
    moderation.add_note(store, mods["mia"], captioned.id, HOSTILE)
    runner = CliRunner()
    env = {"ALIVE_DATA_DIR": str(tmp_path), "ALIVE_DB_URL": fresh_db, "COLUMNS": "400",
           **moderator_env(tmp_path, mods["mia"])}
    for command in (["show", captioned.id, "--no-verify"], ["history"], ["history", captioned.id],
                    ["queue"]):
        result = runner.invoke(app, command, env=env)
        assert result.exit_code == 0, (command, result.output, result.exception)
        if command[0] != "queue":
            assert "[link=https://evil.example]open me[/link]" in result.output, command
            assert ":fire:" in result.output and "\U0001f525" not in result.output
            assert "\x1b]8;" not in result.output  # no terminal hyperlink
    shown = runner.invoke(app, ["show", captioned.id, "--no-verify"], env=env).output
    assert "\\u202e" in shown and "\u202e" not in shown and "\\U000e0041" in shown


# -- invisible format characters -------------------------------------------------------------
ORDINARY = [
    "می‌خواهم به خانه بروم",  # Persian: ZWNJ inside a word
    "क्‍ष and रा‌म",  # Devanagari with ZWJ and ZWNJ
    "family 👨‍👩‍👧‍👦 and a rainbow flag 🏳️‍🌈",  # emoji ZWJ sequences
    "go England 🏴\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F!",  # tag flag
    "שלום\u200f 123 and \u061cعربي",  # direction marks (not overrides)
    "keycap 1️⃣ thumbs 👍🏽",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_writing_passes_unchanged(text: str) -> None:
    assert validate.caption(text, 500) == text
    assert validate.details(text) == text


@pytest.mark.parametrize("text, kind", [
    ("invoice\u202egnp.exe", "bidi control"),
    ("a \u2066hidden\u2069 isolate", "bidi control"),
    ("visible\U000E0069\U000E0067\U000E006E\U000E006F\U000E0072\U000E0065", "tag character"),
    ("a flag without its end 🏴\U000E0067\U000E0062", "tag character"),
    ("invisible\u2062times", "invisible format character"),
])
def test_characters_that_hide_or_reorder_text_are_refused(text: str, kind: str) -> None:
    for check in (lambda: validate.caption(text, 500), lambda: validate.details(text)):
        with pytest.raises(RpcError) as refused:
            check()
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert kind in refused.value.message


def test_zero_width_spaces_are_stripped() -> None:
    assert validate.caption("na\u200bked\u2060 \ufeffsky", 500) == "naked sky"


@pytest.mark.integration
def test_the_server_refuses_hidden_text_and_keeps_ordinary_text(
    tmp_path: Path, model_dir: Path, landscape_jpeg: bytes,
) -> None:
    with ServerProcess(data_dir=tmp_path / "data") as server, \
            AliveClient(server.addr, token=server.token("zoe")) as zoe:
        for call, reason in (
            (lambda: zoe.animate(landscape_jpeg, "lake\u202e", SMALL), "BAD_CAPTION"),
            (lambda: zoe.report("0123456789abcdef", pb.REPORT_REASON_SPAM, "x\U000E0041"),
             "BAD_DETAILS"),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_info(refused.value)[0] == reason
        caption = ORDINARY[0] + " " + ORDINARY[2]
        made = zoe.animate(landscape_jpeg, caption, SMALL)
        store = server.store()
        try:
            assert store.get_video(made.info.video_id).caption == caption  # type: ignore[union-attr]
        finally:
            store.close()
        # The database and its WAL are the service's alone, and so is the data directory.
        for name in ("alive.db", "alive.db-wal"):
            path = server.data_dir / name
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700


# -- tokens ----------------------------------------------------------------------------------
@pytest.mark.integration
def test_long_lived_and_revoked_tokens_are_refused(
    tmp_path: Path, model_dir: Path,
) -> None:
    with ServerProcess(data_dir=tmp_path / "data") as server:
        secret = auth.load_or_create_secret(server.data_dir)
        century = 100 * 365 * 86400
        now = int(time.time())
        forever = jwt.encode({"sub": "old", "iss": auth.ISSUER, "iat": now, "exp": now + century,
                              "jti": uuid.uuid4().hex}, secret, algorithm="HS256")
        no_id = jwt.encode({"sub": "old", "iss": auth.ISSUER, "iat": now, "exp": now + 60},
                           secret, algorithm="HS256")
        future = jwt.encode({"sub": "old", "iss": auth.ISSUER, "iat": now + century,
                             "exp": now + century + 60, "jti": uuid.uuid4().hex}, secret,
                            algorithm="HS256")
        for token in (forever, no_id, future):
            with AliveClient(server.addr, token=token) as client:
                with pytest.raises(grpc.RpcError) as refused:
                    client.get_video("0123456789abcdef")
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(ValueError):
            auth.mint_token(secret, "old", ttl_s=century)

        token = server.token("yuri")
        with AliveClient(server.addr, token=token) as yuri:
            with pytest.raises(grpc.RpcError) as missing:
                yuri.get_video("0123456789abcdef")
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            env = dict(os.environ, ALIVE_DATA_DIR=str(server.data_dir))
            done = subprocess.run([sys.executable, "-m", "alive_service.cli", "revoke-token",
                                   token, "--reason", "phone stolen"], env=env,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            with pytest.raises(grpc.RpcError) as revoked:
                yuri.get_video("0123456789abcdef")
            assert revoked.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "revoked" in (revoked.value.details() or "")
        with AliveClient(server.addr, token=server.token("yuri")) as again:  # a new one works
            with pytest.raises(grpc.RpcError) as fine:
                again.get_video("0123456789abcdef")
            assert fine.value.code() == grpc.StatusCode.NOT_FOUND

