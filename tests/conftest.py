import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def root() -> Path:
    "The repository root."
    return ROOT


@pytest.fixture(autouse=True)
def quiet_plots(monkeypatch):
    monkeypatch.setenv('MPLBACKEND', 'Agg')
