"""Shared fixtures: the read-only data set beside the checkout, skipped cleanly when absent."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("MASKWATCH_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def keep_main_module():
    """Streamlit's AppTest leaves the dashboard script as ``__main__``: a process spawned later would run it again."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or $MASKWATCH_SHARED_DATA); tests needing it skip when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (set MASKWATCH_SHARED_DATA)")
    return SHARED_DATA


PG_TEST_URL = os.environ.get("MASKWATCH_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL with an empty database: a SQLite file in tmp_path, or a fresh PostgreSQL database.

    PostgreSQL tests get their own database (created from $MASKWATCH_TEST_PG_URL,
    dropped afterwards) so they never see each other's rows; they skip, naming the
    URL and the error, when that server cannot be reached.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.exc import OperationalError

    name = f"mw_{os.urandom(6).hex()}"
    try:
        admin = create_engine(PG_TEST_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except (ImportError, OperationalError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        pytest.skip(f"PostgreSQL not reachable at {PG_TEST_URL}: {reason}")

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    request.addfinalizer(drop)
    return make_url(PG_TEST_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def coco_hub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torch hub folder where torchvision finds its COCO Mask R-CNN v2 file already downloaded.

    The file is an untrained 91-class model (no network here), but torchvision
    reaches it through the same weights API, cache lookup and loading as the
    real download, so the "start from COCO weights" paths run for real.
    """
    import torch
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights, maskrcnn_resnet50_fpn_v2

    hub = tmp_path_factory.mktemp("torch_home")
    url = MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT.url
    checkpoints = hub / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(7)
    model = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91)
    torch.save(model.state_dict(), checkpoints / url.rsplit("/", 1)[-1])
    return hub


@pytest.fixture
def coco_cached(coco_hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """TORCH_HOME pointed at :func:`coco_hub_dir`; returns the cached COCO state_dict."""
    import torch

    monkeypatch.setenv("TORCH_HOME", str(coco_hub_dir))
    (path,) = (coco_hub_dir / "hub" / "checkpoints").iterdir()
    return torch.load(path, weights_only=True)
