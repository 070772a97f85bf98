"""The committed artifacts are exactly what the pinned compiler makes of the sources."""

from __future__ import annotations

import subprocess
from pathlib import Path

from secagg.ledger.compiled import LEDGER, REWARD_TOKEN, load_artifact

ARTIFACTS = Path(__file__).resolve().parents[2] / "secagg" / "ledger" / "artifacts"


def test_artifacts_match_a_fresh_compile(node_tools: Path, tmp_path: Path) -> None:
    subprocess.run(
        ["node", "compile.js", "--out", str(tmp_path)],
        cwd=node_tools,
        check=True,
        capture_output=True,
        timeout=120,
    )
    for name in (LEDGER, REWARD_TOKEN):
        fresh = (tmp_path / f"{name}.json").read_bytes()
        committed = (ARTIFACTS / f"{name}.json").read_bytes()
        assert fresh == committed, (
            f"secagg/ledger/artifacts/{name}.json is stale: run `node contracts/compile.js`"
        )


def test_artifacts_load_without_node() -> None:
    ledger = load_artifact(LEDGER)
    assert ledger.compiler_version.startswith("0.8.37+")
    assert ledger.bytecode.startswith("0x") and len(ledger.bytecode) > 1000
    names = {e.get("name") for e in ledger.abi}
    assert {"openRound", "commit", "verifyShare", "NotAPartition", "RoundOpened"} <= names
    assert "mint" in {e.get("name") for e in load_artifact(REWARD_TOKEN).abi}
