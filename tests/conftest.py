"""Shared fixtures. Test modules mirror the package layout: tests/models, tests/app/engine, tests/app/api..."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUTPUT_DIR = ROOT / "test-output"


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Where tests leave artefacts worth looking at (screenshots, tables)."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture(autouse=True, scope="session")
def _quiet_threads() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "2")
