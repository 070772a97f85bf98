"""CSV input: one file with a site column or a folder of per-site files, and every bad input."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from secagg.config import DataSection, load_config
from secagg.data import Standardizer, load_federated
from secagg.data.csv import load_csv
from secagg.errors import ConfigError, DataError, SecAggError
from secagg.simulation import run_simulation

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
    assert "feature column 'z' is not numeric ('F' at line 5; the other cells are numbers)" in (
        message
    )
    assert "data.exclude" in message and "data.categorical" in message


@pytest.mark.parametrize("bad", ["nan", "inf", "-Infinity", ""])
def test_nan_inf_or_missing_feature_values(tmp_path: Path, bad: str) -> None:
    rows = [[bad if i == 7 else r[0], r[1], r[2]] for i, r in enumerate(GOOD)]
    message = _error(_csv(_write(tmp_path / "d.csv", HEADER, rows)))
    assert "line 9" in message and "column 'x'" in message


def test_missing_label_value(tmp_path: Path) -> None:
    rows = [[r[0], r[1], "" if i == 0 else r[2]] for i, r in enumerate(GOOD)]
    message = _error(_csv(_write(tmp_path / "d.csv", HEADER, rows)))
    assert "label column 'label' is missing at line 2" in message
    assert 'data.missing = "drop"' in message


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


# --------------------------------------------------------------------------------------------
# Real hospital exports: excluded columns, categories, missing cells (issue #6)
# --------------------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONSORTIUM_CSV = EXAMPLES / "consortium" / "hospitals.csv"
VENDORS = ["ge", "philips", "siemens"]


def test_excluded_columns_are_neither_features_nor_errors(tmp_path: Path) -> None:
    rows = [[f"P{i:03d}", str(i), "seen twice" if i % 3 else "", str(i % 2)] for i in range(20)]
    path = _write(tmp_path / "d.csv", ["pid", "x", "notes", "label"], rows)
    table = load_csv(_csv(path, exclude=["pid", "notes"]))
    assert table.feature_names == ["x"]
    np.testing.assert_array_equal(table.X[:, 0], np.arange(20))  # empty notes are no error


def test_excluding_an_absent_column_names_it_and_the_columns(tmp_path: Path) -> None:
    message = _error(_csv(_write(tmp_path / "d.csv", HEADER, GOOD), exclude=["patient_id"]))
    assert "no column 'patient_id' (data.exclude)" in message and "x, z, label" in message
    root = tmp_path / "sites"
    root.mkdir()
    _write(root / "a.csv", HEADER, GOOD)
    _write(root / "b.csv", HEADER, GOOD)
    message = _error(_csv(root, partition="site", clients=0, exclude=["patient_id"]))
    assert "no column 'patient_id' (data.exclude) in any of the 2 CSV files" in message


def test_excluded_column_may_exist_at_some_sites_only(tmp_path: Path) -> None:
    root = tmp_path / "sites"
    root.mkdir()
    _write(root / "a.csv", HEADER, GOOD)
    _write(root / "b.csv", [*HEADER, "notes"], [[*r, "text"] for r in GOOD])
    fed = load_federated(_csv(root, partition="site", clients=0, exclude=["notes"]), seed=0)
    assert fed.feature_names == ["x", "z"]


def test_categorical_column_is_one_hot_in_place_in_the_declared_order(tmp_path: Path) -> None:
    vendors = ["siemens", "ge", "philips", "ge"] * 5
    rows = [[str(i), v, str(2 * i), str(i % 2)] for i, v in enumerate(vendors)]
    path = _write(tmp_path / "d.csv", ["x", "scanner", "z", "label"], rows)
    declared = ["siemens", "ge", "philips"]  # not alphabetical: the config's order is kept
    table = load_csv(_csv(path, categorical={"scanner": declared}))
    assert table.feature_names == ["x", "scanner=siemens", "scanner=ge", "scanner=philips", "z"]
    np.testing.assert_array_equal(table.X[:, 1:4], np.eye(3)[[declared.index(v) for v in vendors]])
    np.testing.assert_array_equal(table.X[:, 4], 2 * np.arange(20))


def test_every_site_gets_every_declared_category_even_unseen_ones(tmp_path: Path) -> None:
    root = tmp_path / "sites"
    root.mkdir()
    for site, vendor in (("a", "ge"), ("b", "siemens")):
        _write(
            root / f"{site}.csv",
            ["x", "scanner", "label"],
            [[str(i), vendor, str(i % 2)] for i in range(10)],
        )
    data = _csv(
        root, partition="site", clients=0, standardize="none", categorical={"scanner": VENDORS}
    )
    fed = load_federated(data, seed=0)
    assert fed.feature_names == ["x", "scanner=ge", "scanner=philips", "scanner=siemens"]
    a, b = fed.clients
    np.testing.assert_array_equal(a.X_train[:, 1:], np.tile([1, 0, 0], (len(a.X_train), 1)))
    np.testing.assert_array_equal(b.X_train[:, 1:], np.tile([0, 0, 1], (len(b.X_train), 1)))


def test_value_outside_the_categories_names_file_lines_and_value(tmp_path: Path) -> None:
    root = tmp_path / "sites"
    root.mkdir()
    good = [[str(i), VENDORS[i % 3], str(i % 2)] for i in range(10)]
    bad = [
        [r[0], {2: "toshiba", 5: "toshiba", 8: "GE"}.get(i, r[1]), r[2]] for i, r in enumerate(good)
    ]
    _write(root / "a.csv", ["x", "scanner", "label"], good)
    _write(root / "b.csv", ["x", "scanner", "label"], bad)
    message = _error(_csv(root, partition="site", clients=0, categorical={"scanner": VENDORS}))
    assert "values outside data.categorical (scanner: ge, philips, siemens)" in message
    assert "'toshiba' in column 'scanner' at b.csv lines 4, 7" in message
    assert "'GE' in column 'scanner' at b.csv line 10" in message
    assert "a.csv" not in message


def test_values_outside_the_list_are_not_also_counted_as_missing(tmp_path: Path) -> None:
    scanners = ["ge", "toshiba", "", "philips"] * 5
    rows = [[str(i), v, str(i % 2)] for i, v in enumerate(scanners)]
    path = _write(tmp_path / "d.csv", ["x", "scanner", "label"], rows)
    for missing in ("error", "impute"):
        message = _error(_csv(path, categorical={"scanner": VENDORS}, missing=missing))
        assert "'toshiba' in column 'scanner' at lines 3, 7, 11, 15, 19" in message
        if missing == "error":
            assert "5 empty or NaN feature cells: column 'scanner' at lines 4, 8, 12" in message


def test_categorical_column_that_does_not_exist(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", HEADER, GOOD)
    message = _error(_csv(path, categorical={"scanner": VENDORS}))
    assert "no column 'scanner' (data.categorical)" in message and "x, z, label" in message


def test_a_missing_spelling_that_is_a_declared_category_is_a_value(tmp_path: Path) -> None:
    contrast = ["none", "iodine", ""] + ["none", "iodine"] * 6
    rows = [[str(i), c, str(i % 2)] for i, c in enumerate(contrast)]
    path = _write(tmp_path / "d.csv", ["x", "contrast", "label"], rows)
    message = _error(_csv(path, categorical={"contrast": ["none", "iodine"]}))
    assert "1 empty or NaN feature cell: column 'contrast' at line 4;" in message


def _two_sites(tmp_path: Path, a_x: list[str], b_x: list[str]) -> Path:
    """One file, sites 'a' and 'b', a numeric 'x', a 'scanner' and labels 0/1 alternating."""
    rows = [["a", x, VENDORS[i % 3], str(i % 2)] for i, x in enumerate(a_x)]
    rows += [["b", x, "philips", str(i % 2)] for i, x in enumerate(b_x)]
    return _write(tmp_path / "d.csv", ["site", "x", "scanner", "label"], rows)


def test_a_category_constant_at_a_site_standardises_to_zero_not_nan(tmp_path: Path) -> None:
    path = _two_sites(tmp_path, [str(i) for i in range(30)], [str(i) for i in range(30)])
    data = _csv(
        path, site_column="site", partition="site", clients=0, categorical={"scanner": VENDORS}
    )
    fed = load_federated(data, seed=0)
    for x in [fed.X_test, *(m for c in fed.clients for m in (c.X_train, c.X_val))]:
        assert np.isfinite(x).all()
    a, b = fed.clients
    philips = fed.feature_names.index("scanner=philips")
    # Site b has only Philips scanners: a zero-variance column is centred, not divided by 0.
    np.testing.assert_array_equal(b.X_train[:, philips], 0.0)
    np.testing.assert_allclose(a.X_train[:, philips].std(), 1.0, atol=1e-5)


def test_missing_error_lists_every_cell_up_to_a_limit(tmp_path: Path) -> None:
    rows = [[str(i), str(i), VENDORS[i % 3], str(i % 2)] for i in range(40)]
    for i in range(15):
        rows[i][0] = ""  # x empty in rows 0-14: lines 2-16
    for i in range(20, 30):
        rows[i][1] = "NaN"  # z NaN in rows 20-29: lines 22-31
    rows[35][2] = ""  # an empty category
    path = _write(tmp_path / "d.csv", ["x", "z", "scanner", "label"], rows)
    message = _error(_csv(path, categorical={"scanner": VENDORS}))
    assert "26 empty or NaN feature cells:" in message
    lines_x = ", ".join(str(n) for n in range(2, 17))
    assert (
        f"column 'x' at lines {lines_x}; column 'z' at lines 22, 23, 24, 25, 26 ... and 6 more;"
        in message
    )
    assert 'set data.missing = "drop"' in message and '"impute"' in message


def test_missing_drop_drops_rows_with_an_empty_feature_or_label_only(tmp_path: Path) -> None:
    rows = [[str(i), str(i % 7), VENDORS[i % 3], "text", str(i % 2)] for i in range(30)]
    rows[3][1] = ""  # numeric feature
    rows[5][1] = "NA"
    rows[7][4] = ""  # label
    rows[9][3] = ""  # excluded column: not a reason to drop
    rows[11][2] = "null"  # categorical feature
    path = _write(tmp_path / "d.csv", ["rid", "z", "scanner", "notes", "label"], rows)
    data = _csv(path, exclude=["notes"], categorical={"scanner": VENDORS}, missing="drop")
    table = load_csv(data)
    expected = sorted(set(range(30)) - {3, 5, 7, 11})
    np.testing.assert_array_equal(table.X[:, 0], expected)
    np.testing.assert_array_equal(table.y, [i % 2 for i in expected])


def test_missing_drop_that_empties_a_site_names_it(tmp_path: Path) -> None:
    path = _two_sites(tmp_path, [str(i) for i in range(10)], ["", "nan"] * 5)
    message = _error(
        _csv(path, site_column="site", categorical={"scanner": VENDORS}, missing="drop")
    )
    assert "leaves no rows at site 'b'" in message and '"impute"' in message


def test_impute_fills_numbers_from_the_rows_own_site_never_pooled(tmp_path: Path) -> None:
    a_x = ["1", "2", "", "4", "100"]  # site a: median of 1, 2, 4, 100 = 3
    b_x = ["1000", "N/A", "1010", "1030"]  # site b: median 1010; pooled, both would get 100
    path = _two_sites(tmp_path, a_x, b_x)
    table = load_csv(
        _csv(path, site_column="site", categorical={"scanner": VENDORS}, missing="impute")
    )
    assert table.X[2, 0] == 3.0
    assert table.X[len(a_x) + 1, 0] == 1010.0
    np.testing.assert_array_equal(table.X[[0, 1, 3, 4], 0], [1, 2, 4, 100])  # others untouched


def test_impute_fills_a_category_with_the_sites_most_frequent_one(tmp_path: Path) -> None:
    scanners = ["siemens", "ge", "ge", "siemens", "", "philips", "", "ge", "siemens"]
    rows = [
        [s, str(i), v, str(i % 2)]
        for i, (s, v) in enumerate(zip("aaaaabbbb", scanners, strict=True))
    ]
    rows += [["b", "9", "ge", "1"]]  # b: ge twice, philips once, siemens once -> ge
    path = _write(tmp_path / "d.csv", ["site", "x", "scanner", "label"], rows)
    declared = ["siemens", "ge", "philips"]  # a: siemens and ge tie; the first listed wins
    table = load_csv(
        _csv(path, site_column="site", categorical={"scanner": declared}, missing="impute")
    )
    np.testing.assert_array_equal(table.X[4, 1:], [1, 0, 0])  # site a -> siemens
    np.testing.assert_array_equal(table.X[6, 1:], [0, 1, 0])  # site b -> ge


def test_impute_with_a_column_empty_at_a_whole_site_names_site_and_column(tmp_path: Path) -> None:
    path = _two_sites(tmp_path, [str(i) for i in range(10)], [""] * 10)
    message = _error(
        _csv(path, site_column="site", categorical={"scanner": VENDORS}, missing="impute")
    )
    assert "nothing to fill from: no value at all in column 'x' at site 'b'" in message
    assert "data.exclude" in message


def test_labels_are_never_imputed(tmp_path: Path) -> None:
    rows = [[r[0], r[1], "" if i in (2, 4) else r[2]] for i, r in enumerate(GOOD)]
    message = _error(_csv(_write(tmp_path / "d.csv", HEADER, rows), missing="impute"))
    assert "label column 'label' is missing at lines 4, 6; labels are never imputed" in message


def test_infinite_values_are_errors_even_with_impute(tmp_path: Path) -> None:
    rows = [["inf" if i == 7 else r[0], r[1], r[2]] for i, r in enumerate(GOOD)]
    message = _error(_csv(_write(tmp_path / "d.csv", HEADER, rows), missing="impute"))
    assert "infinite feature values: 'inf' in column 'x' at line 9" in message


def test_options_built_in_code_are_checked_too(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", HEADER, GOOD)
    assert "data.missing = 'mean' is not one of" in _error(_csv(path, missing="mean"), ConfigError)
    message = _error(_csv(path, categorical={"x": ["a", "a"]}), ConfigError)
    assert "data.categorical.x lists 'a' more than once" in message


def _consortium(**kw: object) -> DataSection:
    return _csv(
        CONSORTIUM_CSV, label="diagnosis", site_column="site", partition="site", clients=0, **kw
    )


def test_quirky_consortium_file_gives_one_clear_error_per_kind_of_problem() -> None:
    message = _error(_consortium())
    assert message.startswith(f"{CONSORTIUM_CSV}: 2 kinds of problem: (1) feature columns")
    # (1) every text column, with the config that fixes it
    for column in ("'patient_id' ('", "'scanner' ('", "'notes' ('"):
        assert column in message
    assert 'data.exclude = ["patient_id", "notes"]' in message
    assert 'data.categorical = {scanner = ["ge", "philips", "siemens"]}' in message
    # (2) every empty numeric cell, by column in header order (scanner's are part of (1))
    header, *rows = list(csv.reader(CONSORTIUM_CSV.open(encoding="utf-8")))
    numeric = ["age", "bmi", "systolic_bp", "marker", "lesion_mm"]
    empty = {c: [n + 2 for n, r in enumerate(rows) if r[header.index(c)] == ""] for c in numeric}
    listing = "; ".join(
        f"column '{c}' at line{'s' * (len(n) > 1)} {', '.join(map(str, n))}"
        for c, n in empty.items()
        if n
    )
    n_empty = sum(map(len, empty.values()))
    assert n_empty >= 5
    assert f"(2) {n_empty} empty or NaN feature cells: {listing}; set data.missing" in message

    # With the columns declared, the empty cells (categorical ones too) are what is left.
    declared = _consortium(exclude=["patient_id", "notes"], categorical={"scanner": VENDORS})
    message = _error(declared)
    assert "kinds of problem" not in message
    scanner = [str(n + 2) for n, r in enumerate(rows) if r[header.index("scanner")] == ""]
    assert f"{n_empty + len(scanner)} empty or NaN feature cells:" in message
    assert f"column 'scanner' at lines {', '.join(scanner)}" in message


def test_quirky_consortium_file_trains_end_to_end() -> None:
    config = load_config(
        EXAMPLES / "consortium.toml",
        [
            "run.rounds=2",
            "privacy.mode=none",
            "protection.mode=none",
            f"data.path={json.dumps(str(CONSORTIUM_CSV))}",
        ],
    )
    assert config.data.exclude and config.data.categorical and config.data.missing == "impute"
    fed = load_federated(config.data, config.run.seed)
    assert [c.name for c in fed.clients] == [
        "hillcrest",
        "lakeview",
        "northgate",
        "riverside",
        "st-marys",
    ]
    assert fed.feature_names == [
        "age",
        "bmi",
        "systolic_bp",
        "marker",
        "lesion_mm",
        "scanner=ge",
        "scanner=philips",
        "scanner=siemens",
    ]
    for x in [fed.X_test, *(m for c in fed.clients for m in (c.X_train, c.X_val))]:
        assert np.isfinite(x).all()
    lakeview = fed.clients[1]  # owns only GE scanners: its one-hot columns are constant
    np.testing.assert_array_equal(lakeview.X_train[:, 5:], 0.0)
    result = run_simulation(config, dataset=fed)
    assert len(result.rounds) == 2
    # Better than always answering the majority class (62% of the test rows).
    majority = np.bincount(fed.y_test).max() / len(fed.y_test)
    assert result.final["accuracy"] > majority + 0.1


def test_consortium_csv_is_what_its_script_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_csv", CONSORTIUM_CSV.with_name("make_csv.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "OUT", tmp_path / "hospitals.csv")
    module.main()
    assert (tmp_path / "hospitals.csv").read_bytes() == CONSORTIUM_CSV.read_bytes()
