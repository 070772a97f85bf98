"""CSV input: one file with a site column or a folder of per-site files, and every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from secagg.config import DataSection
from secagg.data import Standardizer, load_federated
from secagg.errors import ConfigError, DataError, SecAggError

SITES = {"north": (0.0, 1.0), "south": (100.0, 10.0), "east": (-50.0, 0.1)}  # mean, scale


def _site_rows(site: str, n: int, start: int, rng: np.random.Generator) -> list[list[str]]:
    """Rows with a unique id, two features on a site-specific scale, and a text label."""
    mean, scale = SITES[site]
    rows = []
    for i in range(n):
        label = "sick" if i % 3 == 0 else "well"
        a, b = mean + scale * rng.normal(size=2)
        rows.append([str(start + i), f"{a:.6f}", f"{b:.6f}", label])
    return rows


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def single_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for s, site in enumerate(SITES):
        rows += [[site, *r] for r in _site_rows(site, 30, 1000 * s, rng)]
    order = rng.permutation(len(rows))  # sites interleaved, as in a real export
    return _write(
        tmp_path / "all.csv", ["hospital", "rid", "a", "b", "label"], [rows[i] for i in order]
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    root = tmp_path / "sites"
    root.mkdir()
    for s, site in enumerate(SITES):
        _write(
            root / f"{site}.csv", ["rid", "a", "b", "label"], _site_rows(site, 30, 1000 * s, rng)
        )
    (root / "README.txt").write_text("not a CSV: ignored")
    return root


def _csv(path: Path, **kw: object) -> DataSection:
    return DataSection(dataset="csv", path=str(path), **kw)  # type: ignore[arg-type]


def _by_rid(X: np.ndarray) -> np.ndarray:
    return X[:, 0]  # the unique id column (features are in file order, raw under "none")


def test_single_file_with_site_column_gives_one_client_per_site(single_file: Path) -> None:
    data = _csv(single_file, site_column="hospital", partition="site", clients=0)
    fed = load_federated(data, seed=0)
    assert [c.name for c in fed.clients] == sorted(SITES)
    assert fed.feature_names == ["rid", "a", "b"]  # site column and label excluded
    assert fed.class_names == ["sick", "well"]
    assert (fed.n_features, fed.n_classes, fed.task) == (3, 2, "binary")
    explicit = _csv(single_file, site_column="hospital", partition="site", clients=3)
    assert len(load_federated(explicit, seed=0).clients) == 3


def test_folder_gives_one_client_per_file(folder: Path) -> None:
    fed = load_federated(_csv(folder, partition="site", clients=0, standardize="none"), seed=0)
    assert [c.name for c in fed.clients] == ["east", "north", "south"]  # sorted file stems
    for c in fed.clients:
        offset = 1000 * list(SITES).index(c.name)
        ids = np.concatenate([_by_rid(c.X_train), _by_rid(c.X_val)])
        assert np.all((ids >= offset) & (ids < offset + 30))  # only its own file's rows
        assert len(ids) == 30 - 6  # 20% of 30 held out for testing
    # Every site contributes held-out test rows, and none of them is a client row.
    test_ids = _by_rid(fed.X_test)
    assert sorted({int(i) // 1000 for i in test_ids}) == [0, 1, 2]
    assert len(test_ids) == 18
    client_ids = np.concatenate([_by_rid(x) for c in fed.clients for x in (c.X_train, c.X_val)])
    assert not set(test_ids) & set(client_ids)


def test_site_standardisation_of_csv_uses_each_sites_statistics(folder: Path) -> None:
    data = _csv(folder, partition="site", clients=0)
    fed = load_federated(data, seed=0)
    raw = load_federated(_csv(folder, partition="site", clients=0, standardize="none"), seed=0)
    test_blocks = []
    for c, r in zip(fed.clients, raw.clients, strict=True):
        np.testing.assert_allclose(c.X_train.mean(axis=0), 0, atol=1e-4)
        np.testing.assert_allclose(c.X_train.std(axis=0), 1, atol=1e-3)
        scaler = Standardizer.fit(r.X_train)
        np.testing.assert_allclose(c.X_val, scaler.apply(r.X_val), atol=1e-4)
        test_rows = np.isin(_by_rid(raw.X_test) // 1000, list(SITES).index(c.name))
        test_blocks.append((test_rows, scaler))
    # Each site's held-out rows are scaled with *that site's* training statistics, so a
    # site 100x larger than another does not dominate the evaluation scale.
    for rows, scaler in test_blocks:
        np.testing.assert_allclose(fed.X_test[rows], scaler.apply(raw.X_test[rows]), atol=1e-4)
    assert np.abs(fed.X_test[:, 1:]).max() < 6


def test_csv_rows_can_be_pooled_and_dealt_iid_or_dirichlet(single_file: Path) -> None:
    for partition in ("iid", "dirichlet"):
        data = _csv(
            single_file, site_column="hospital", partition=partition, clients=4, standardize="none"
        )
        fed = load_federated(data, seed=0)
        assert [c.name for c in fed.clients] == [f"hospital-0{i}" for i in range(4)]
        assert fed.feature_names == ["rid", "a", "b"]  # the site column is still no feature
        ids = [set(_by_rid(c.X_train)) for c in fed.clients]
        assert any(len({int(i) // 1000 for i in s}) > 1 for s in ids)  # sites mixed


def test_numeric_labels_sort_numerically_and_merge_spellings(tmp_path: Path) -> None:
    rows = [[str(i), lab] for i, lab in enumerate(["10", "2", "1.0", "2.0", "1", "10"] * 5)]
    path = _write(tmp_path / "d.csv", ["x", "y"], rows)
    fed = load_federated(_csv(path, label="y", clients=2), seed=0)
    assert fed.class_names == ["1", "2", "10"]


def test_class_indices_are_shared_across_sites(tmp_path: Path) -> None:
    root = tmp_path / "sites"
    root.mkdir()
    _write(root / "a.csv", ["x", "label"], [[str(i), ["cat", "dog"][i % 2]] for i in range(10)])
    _write(root / "b.csv", ["label", "x"], [[["emu", "dog"][i % 2], str(i)] for i in range(10)])
    fed = load_federated(_csv(root, partition="site", clients=0, standardize="none"), 0)
    assert fed.class_names == ["cat", "dog", "emu"]
    a, b = fed.clients
    assert set(np.concatenate([a.y_train, a.y_val])) <= {0, 1}
    assert set(np.concatenate([b.y_train, b.y_val])) <= {1, 2}


def test_site_client_count_mismatch_is_a_config_error(folder: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.clients = 5 but .* has 3 sites"):
        load_federated(_csv(folder, partition="site", clients=5), seed=0)


def test_single_file_site_partition_needs_site_column(single_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"needs data\.site_column"):
        load_federated(_csv(single_file, partition="site", clients=0), seed=0)


def _error(data: DataSection, kind: type[SecAggError] = DataError) -> str:
    with pytest.raises(kind) as exc:
        load_federated(data, seed=0)
    message = str(exc.value)
    assert "\n" not in message
    return message


HEADER = ["x", "z", "label"]
GOOD = [[str(i), str(i * 2), str(i % 2)] for i in range(20)]


def test_missing_path(tmp_path: Path) -> None:
    assert "no such file or folder" in _error(_csv(tmp_path / "nope.csv"))


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert "contains no .csv files" in _error(_csv(tmp_path / "empty", partition="site", clients=0))


def test_absent_label_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", HEADER, GOOD)
    message = _error(_csv(path, label="outcome"))
    assert "no column 'outcome' (data.label)" in message and "x, z, label" in message
    assert str(path) in message


def test_semicolon_separated_file_gets_a_delimiter_hint(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("x;z;label\n1;2;0\n3;4;1\n")
    assert "not comma-separated" in _error(_csv(path))


def test_absent_site_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", HEADER, GOOD)
    message = _error(_csv(path, site_column="clinic", partition="site", clients=0))
    assert "no column 'clinic' (data.site_column)" in message


def test_non_numeric_feature_column(tmp_path: Path) -> None:
    rows = [[r[0], "F" if i == 3 else r[1], r[2]] for i, r in enumerate(GOOD)]
    message = _error(_csv(_write(tmp_path / "d.csv", HEADER, rows)))
    assert "feature column 'z' is not numeric ('F' at line 5)" in message
    assert "encode it as numbers or remove the column" in message


@pytest.mark.parametrize("bad", ["nan", "inf", "-Infinity", ""])
def test_nan_inf_or_missing_feature_values(tmp_path: Path, bad: str) -> None:
    rows = [[bad if i == 7 else r[0], r[1], r[2]] for i, r in enumerate(GOOD)]
    message = _error(_csv(_write(tmp_path / "d.csv", HEADER, rows)))
    assert "line 9" in message and "column 'x'" in message


def test_missing_label_value(tmp_path: Path) -> None:
    rows = [[r[0], r[1], "" if i == 0 else r[2]] for i, r in enumerate(GOOD)]
    message = _error(_csv(_write(tmp_path / "d.csv", HEADER, rows)))
    assert "line 2: label column 'label' is missing" in message


def test_single_class(tmp_path: Path) -> None:
    rows = [[r[0], r[1], "1"] for r in GOOD]
    assert "single class '1'" in _error(_csv(_write(tmp_path / "d.csv", HEADER, rows)))


def test_ragged_row(tmp_path: Path) -> None:
    rows = [*GOOD[:4], ["1", "2"], *GOOD[4:]]
    assert "line 6: 2 values but the header has 3 columns" in _error(
        _csv(_write(tmp_path / "d.csv", HEADER, rows))
    )


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("")
    assert "empty file" in _error(_csv(tmp_path / "e.csv"))
    assert "no data rows" in _error(_csv(_write(tmp_path / "h.csv", HEADER, [])))


def test_no_feature_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", ["label"], [[str(i % 2)] for i in range(10)])
    assert "no feature columns" in _error(_csv(path))


def test_site_with_too_few_rows(tmp_path: Path) -> None:
    root = tmp_path / "sites"
    root.mkdir()
    _write(root / "big.csv", HEADER, GOOD)
    _write(root / "tiny.csv", HEADER, GOOD[:2])
    message = _error(_csv(root, partition="site", clients=0))
    assert "tiny.csv" in message and "site 'tiny' has 2 row(s)" in message
    assert "at least 3" in message


def test_folder_files_with_different_columns(tmp_path: Path) -> None:
    root = tmp_path / "sites"
    root.mkdir()
    _write(root / "a.csv", HEADER, GOOD)
    _write(root / "b.csv", ["x", "w", "label"], GOOD)
    message = _error(_csv(root, partition="site", clients=0))
    assert "b.csv" in message and "missing z" in message and "extra w" in message


def test_too_many_clients_for_pooled_csv(tmp_path: Path) -> None:
    message = _error(_csv(_write(tmp_path / "d.csv", HEADER, GOOD), clients=9))
    assert "data.clients=9 but only 16 training samples" in message
