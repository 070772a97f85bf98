"""Local Flower federations for the deployment tests: real processes, real HTTP, always stopped.

Each federation is one SuperLink, four SuperNodes and their ClientApp workers, every one a
separate process group on 127.0.0.1 at a free port (:class:`secagg.flower.deploy.
LocalFederation`); the fixture stops every group it started, whatever the test did.
The anvil node comes from the ledger tests' fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ledger.conftest import anvil_process, anvil_url  # noqa: F401  (the ledger tests' node)

from secagg.config import Config
from secagg.flower.deploy import LocalFederation


@pytest.fixture
def local_federation(tmp_path: Path) -> Iterator[Callable[..., LocalFederation]]:
    """Start a federation of 4 hospitals with keys for every given config; stopped at the end."""
    started: list[LocalFederation] = []

    def start(*configs: Config) -> LocalFederation:
        federation = LocalFederation(tmp_path / f"federation-{len(started)}", 4)
        started.append(federation)
        federation.generate_keys(*configs)
        federation.start()
        return federation

    try:
        yield start
    finally:
        for federation in started:
            federation.stop()
