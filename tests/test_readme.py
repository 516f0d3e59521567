"""The README documents what the code does: every setting, every endpoint, every family."""

from __future__ import annotations

from pathlib import Path

import models
from app.main import app
from app.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_table() -> None:
    for name in Settings.model_fields:
        assert f"`LAYERSCOPE_{name.upper()}`" in README, name


def test_every_endpoint_is_listed() -> None:
    for path in app.openapi()["paths"]:
        if path.startswith("/api/"):
            assert path.split("{")[0].rstrip("/") in README, path


def test_the_screenshot_is_there() -> None:
    assert README.splitlines()[2].startswith("![") and "docs/explorer.png" in README.splitlines()[2]
    assert (Path(__file__).resolve().parents[1] / "docs" / "explorer.png").exists()


def test_every_family_is_named() -> None:
    for name in ("MLP", "LeNet-5", "AlexNet", "VGG", "ResNet", "Transformer", "GPT", "ViT", "Hugging Face"):
        assert name in README
    assert len(models.list_architectures()) == 10
