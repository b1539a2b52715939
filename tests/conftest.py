"""Shared fixtures: sample photos from installed packages, real servers, real databases."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.harness import free_port

PG_ADMIN_URL = os.environ.get("ALIVE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def jpeg(rgb: np.ndarray, quality: int = 92, exif: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    kwargs = {"exif": exif} if exif else {}
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def landscape_rgb() -> np.ndarray:
    """A temple under a cloudy sky (scikit-learn's sample china.jpg)."""
    from sklearn.datasets import load_sample_image

    return load_sample_image("china.jpg")


@pytest.fixture(scope="session")
def landscape_jpeg(landscape_rgb: np.ndarray) -> bytes:
    return jpeg(landscape_rgb)


@pytest.fixture(scope="session")
def portrait_jpeg() -> bytes:
    """A person's face (scikit-image's astronaut, public domain)."""
    from skimage import data

    return jpeg(data.astronaut())


# Fixtures that hand out built models (from `make models`, or built for the session when
# missing, which takes minutes). A test that uses one, directly or through another fixture,
# is marked `models`, so `make unit` (-m "not integration and not models") stays fast.
MODEL_FIXTURES = frozenset({"model_dir", "caption_models", "motion_dir", "safety_models"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.models)


def configured_model_dir() -> Path:
    return Path(os.environ.get("ALIVE_MODEL_DIR", "build/models"))


def models_with(tmp_path_factory: pytest.TempPathFactory, needed: Iterable[str],
                *builds: Callable[[Path], None]) -> Path:
    """The configured model directory when it holds ``needed``, else a fresh build of just
    these parts (so a component's tests also run before `make models`)."""
    configured = configured_model_dir()
    if all((configured / name).is_file() for name in needed):
        return configured
    out = tmp_path_factory.mktemp("models")
    for build in builds:
        build(out)
    return out


def grace_hopper() -> np.ndarray:
    """Matplotlib's sample portrait of Grace Hopper."""
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


@pytest.fixture(scope="session")
def model_dir() -> Path:
    path = configured_model_dir()
    if not (path / "BUILD.json").exists():
        pytest.fail(f"models are not built in {path}: run `make models`")
    return path


def _pg_available() -> bool:
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


class PgDatabases:
    """Fresh PostgreSQL databases on the machine's server, dropped at the end of the session:
    empty ones (the server migrates them), or ones at the schema's head cloned from a template
    migrated once (cloning is fast; migrating every time is not)."""

    def __init__(self) -> None:
        import sqlalchemy

        self.admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.names: list[str] = []
        self._template: str | None = None
        # Dropping a database takes a second (it checkpoints): done beside the next test.
        self._dropper = ThreadPoolExecutor(max_workers=1)

    @staticmethod
    def url(name: str) -> str:
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def new(self, template: str | None = None) -> str:
        import sqlalchemy

        name = f"alive_test_{uuid.uuid4().hex[:10]}"
        clause = f' TEMPLATE "{template}"' if template else ""
        with self.admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"{clause}'))
        self.names.append(name)
        return self.url(name)

    def migrated(self) -> str:
        """A new database already at the schema's head."""
        if self._template is None:
            from alive_service.store import upgrade

            template_url = self.new()
            upgrade(template_url)
            self._template = template_url.rsplit("/", 1)[1]
        return self.new(template=self._template)

    def drop_soon(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.names.remove(name)
        self._dropper.submit(self._drop, name)

    def _drop(self, name: str) -> None:
        import sqlalchemy

        with self.admin.connect() as conn:
            conn.execute(sqlalchemy.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}'"))
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))

    def drop_all(self) -> None:
        self._dropper.shutdown(wait=True)
        for name in self.names:
            self._drop(name)
        self.admin.dispose()


# A cluster of a test's own, for the tests that stop and restart the database.
def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise FileNotFoundError(f"PostgreSQL's {name} is not installed")
    return found[-1]


def _as_postgres(args: list[str]) -> subprocess.CompletedProcess:
    # PostgreSQL refuses to run as root; run it as the postgres user when we are root.
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + args, check=True, capture_output=True, text=True, timeout=60)


class PgCluster:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="alive-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        _as_postgres([_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      "--no-sync"])

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on"
        _as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-w",
                      "-l", str(self.root / "log"), "start"])

    def stop(self, mode: str = "immediate") -> None:
        # "immediate" is a crash as far as the data is concerned: recovery replays the WAL.
        _as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("fast")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
        pytest.skip("PostgreSQL is not reachable")
    databases = PgDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def pg_url(pg_databases: PgDatabases) -> str:
    """One PostgreSQL database shared by this session's storage tests."""
    return pg_databases.new()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'alive.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database at the schema's head for each test (the moderation queue and its
    statistics look at every row), on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        from alive_service.store import upgrade

        url = f"sqlite:///{tmp_path / 'alive.db'}"
        upgrade(url)
        yield url
        return
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    url = databases.migrated()
    yield url
    databases.drop_soon(url)


@pytest.fixture
def own_postgres() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of this test's own, which it may stop and start."""
    try:
        cluster = PgCluster()
    except (FileNotFoundError, OSError) as exc:
        pytest.skip(f"cannot make a PostgreSQL cluster here: {exc}")
    cluster.start()
    yield cluster
    cluster.destroy()


# -- moderators: an admin key for the data directory, and enrolled moderator keys ----------
def enrol_moderators(store: object, data_dir: Path, *names: str) -> dict[str, object]:
    """Enrol ``names`` as moderators, signed by the data directory's admin key (made on first
    use, its public half where alive-mod looks). Returns name -> moderators.Moderator."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from alive_service import moderation, moderators

    admin_path = data_dir / "auth" / "moderation-admin.key"
    if not admin_path.exists():
        admin_key = moderators.new_key(admin_path)
        (data_dir / "auth" / "moderation-admin.pub").write_text(moderators.public_hex(admin_key))
    admin = moderators.Moderator(moderators.ADMIN_ACTOR, moderators.load_private_key(admin_path))
    enrolled = {}
    for name in names:
        key = Ed25519PrivateKey.generate()
        moderation.enrol(store, admin, name, moderators.public_hex(key))  # type: ignore[arg-type]
        enrolled[name] = moderators.Moderator(name, key)
    return enrolled


def moderator_env(data_dir: Path, moderator: object) -> dict[str, str]:
    """ALIVE_MODERATOR and ALIVE_MODERATOR_KEY for alive-mod, acting as ``moderator``."""
    from alive_service import moderators

    assert isinstance(moderator, moderators.Moderator)
    path = data_dir / f"moderator-{moderator.name}-cli.key"
    if not path.exists():
        moderators.write_private_key(path, moderator.key)
    return {"ALIVE_MODERATOR": moderator.name, "ALIVE_MODERATOR_KEY": str(path)}


CAPTION_MODEL_FILES = ("e5.onnx", "e5_tokenizer.json", "e5_words_q4.npy", "caption_heads.npz",
                       "harm_svm.npz", "person_head.npz", "nudenet_320n.onnx")


@pytest.fixture(scope="session")
def caption_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The caption models, built once for every caption test when `make models` has not."""
    from safety.build import build

    return models_with(tmp_path_factory, CAPTION_MODEL_FILES, build)


@pytest.fixture(scope="session")
def captions(caption_models: Path):  # -> safety.caption.CaptionChecker
    from safety.caption import CaptionChecker
    from safety.policy import load_policy

    return CaptionChecker(caption_models, load_policy())
