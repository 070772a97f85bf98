"""Suite-wide settings: one torch thread per xdist worker, hypothesis without deadlines."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")

settings.register_profile(
    "suite", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("suite")


@pytest.fixture
def write_toml(tmp_path):  # type: ignore[no-untyped-def]
    """Write a TOML text to a file in tmp_path and return its path."""

    def write(text: str, name: str = "run.toml"):  # type: ignore[no-untyped-def]
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
