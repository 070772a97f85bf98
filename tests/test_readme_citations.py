"""Every test the README cites exists: a trust sentence whose test was renamed, moved or never
written fails the suite, naming the citation.

How the README cites (paths under ``tests/``, or from the repository root when they start
with ``tests/``): ```masking/test_masking_client.py::test_name``` in full, then
```::other_name``` for further tests of the same file: the file of the last full citation,
in the same parenthesis, sentence or paragraph, or the file that introduces a list (a bare
path ending its line with a colon: "each a test in ```tests/x/test_y.py```:"). Any other
bare path (```masking/test_masking_privacy.py```: what it shows) names a whole file and
changes nothing. Test names are read from the files' syntax trees, so nothing is imported;
a parametrised id (``[signed]``) is ignored.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

_SPAN = re.compile(r"`([^`\n]+)`")
_FILE = re.compile(r"(?P<path>(?:[\w.-]+/)*test_\w+\.py)(?:::(?P<name>\w+)(?:\[[^\]]*\])?)?")
_CONTINUATION = re.compile(r"::(?P<name>\w+)(?:\[[^\]]*\])?")


@dataclass(frozen=True)
class Citation:
    line: int
    file: str  # as the README spells the file (after expanding an abbreviation)
    name: str

    def __str__(self) -> str:
        return f"README.md:{self.line}: {self.file}::{self.name}"


def citations(text: str) -> list[Citation]:
    """Every (file, test name) the text cites, continuations resolved to their file."""
    found: list[Citation] = []
    current: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        for span in _SPAN.finditer(line):
            full = _FILE.fullmatch(span[1])
            if full and full["name"]:
                current = full["path"]
                found.append(Citation(number, current, full["name"]))
            elif full and line[span.end() :].strip() == ":":  # a list of its tests follows
                current = full["path"]
            elif more := _CONTINUATION.fullmatch(span[1]):
                found.append(Citation(number, current or "(no file named before)", more["name"]))
    return found


def _resolve(path: str) -> Path | None:
    for base in (TESTS, ROOT):
        candidate = base / path
        if candidate.is_file():
            return candidate
    return None


@cache
def _test_names(path: Path) -> frozenset[str]:
    """Module-level functions and classes of a test file, from its syntax tree."""
    tree = ast.parse(path.read_text(), filename=str(path))
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return frozenset(node.name for node in tree.body if isinstance(node, kinds))


def broken(cited: list[Citation]) -> list[str]:
    """One line per citation that does not resolve to a test, saying why."""
    problems = []
    for citation in cited:
        path = _resolve(citation.file)
        if path is None:
            problems.append(f"{citation}: no file tests/{citation.file}")
        elif citation.name not in _test_names(path):
            where = path.relative_to(ROOT)
            problems.append(f"{citation}: {where} has no test {citation.name!r}")
    return problems


def test_every_test_the_readme_cites_exists() -> None:
    cited = citations((ROOT / "README.md").read_text())
    assert len(cited) > 40  # the reader found the trust model's citations
    problems = broken(cited)
    assert not problems, "README citations that name no test:\n" + "\n".join(problems)


def test_the_citation_check_follows_abbreviations_and_names_every_broken_one() -> None:
    """The check itself, on a made-up paragraph: full citations, ``::`` continuations (across
    sentences, past a bare path that only names a file, after a path that introduces a
    list), a parametrised id; and three broken ones (a continuation of the wrong file, a
    renamed test, a missing file)."""
    text = (
        "Refused (`masking/test_masking_client.py::test_replayed_message_is_rejected`,\n"
        "`::test_wrong_round_message_is_rejected`; `masking/test_masking_round.py`: all).\n"
        "Again (`::test_a_survivor_set_with_fewer_than_t_named_clients_is_refused[signed]`).\n"
        "Each a test in `masking/test_masking_server.py`:\n"
        "- `::test_client_ids_must_belong_to_the_round`,\n"
        "- `crypto/test_crypto_kdf.py::test_that_was_renamed`, `nowhere/test_x.py::test_y`.\n"
    )
    cited = citations(text)
    client, server = "masking/test_masking_client.py", "masking/test_masking_server.py"
    assert [(c.line, c.file, c.name) for c in cited] == [
        (1, client, "test_replayed_message_is_rejected"),
        (2, client, "test_wrong_round_message_is_rejected"),
        (3, client, "test_a_survivor_set_with_fewer_than_t_named_clients_is_refused"),
        (5, server, "test_client_ids_must_belong_to_the_round"),
        (6, "crypto/test_crypto_kdf.py", "test_that_was_renamed"),
        (6, "nowhere/test_x.py", "test_y"),
    ]
    problems = broken(cited)
    assert [p.split(": ", 1)[0] for p in problems] == ["README.md:5", "README.md:6", "README.md:6"]
    assert f"tests/{server} has no test 'test_client_ids_must_belong_to_the_round'" in problems[0]
    assert "tests/crypto/test_crypto_kdf.py has no test 'test_that_was_renamed'" in problems[1]
    assert "no file tests/nowhere/test_x.py" in problems[2]
