"""Load a user's CSV data: one file with a site column, or a folder with one CSV per site.

This is the entry point for real deployments (each hospital exports a CSV), so every problem
in the files is reported as a one-line :class:`~secagg.errors.DataError` naming the file, line
and column, and saying what to change. No pandas: the standard ``csv`` module is enough and
keeps the dependency set small.

Rules:

* The first row is a header. ``data.label`` names the label column; labels may be numbers or
  text. Classes are sorted (numerically when every label is a number, else as text) over all
  sites together, so a class index means the same thing at every site.
* In a single file, ``data.site_column`` (when set) names each row's site; sites are sorted
  by name. In a folder, each ``*.csv`` file is one site named by its file stem (files sorted
  by name); a ``data.site_column`` present in those files is dropped rather than used.
* Every other column is a feature and must be numeric and finite in every row (drop
  identifiers and encode categories before exporting).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from secagg.config import DataSection
from secagg.data.table import Table
from secagg.errors import ConfigError, DataError

# Label spellings read as "missing" rather than as a class called "nan".
_MISSING_LABELS = frozenset({"", "nan", "na", "n/a", "null", "none"})


@dataclass(frozen=True)
class _RawFile:
    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int]  # physical line number of each row, for error messages


def load_csv(data: DataSection) -> Table:
    """Read ``data.path`` (file or folder) into a :class:`Table` with site tags."""
    if not data.path:
        raise ConfigError("data.dataset = 'csv' needs data.path (a CSV file or a folder of CSVs)")
    path = Path(data.path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
        if not files:
            raise DataError(
                f"data.path: folder {path} contains no .csv files; put one CSV per site there"
            )
        return _from_folder([_read(f) for f in files], data)
    if path.is_file():
        return _from_single_file(_read(path), data)
    raise DataError(f"data.path: no such file or folder: {path}")


def _read(path: Path) -> _RawFile:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header: list[str] | None = None
            rows: list[list[str]] = []
            lines: list[int] = []
            for raw in reader:
                if not raw or all(not cell.strip() for cell in raw):
                    continue  # blank line
                cells = [cell.strip() for cell in raw]
                if header is None:
                    header = cells
                    continue
                if len(cells) != len(header):
                    raise DataError(
                        f"{path}, line {reader.line_num}: {len(cells)} values but the header "
                        f"has {len(header)} columns; every row needs one value per column"
                    )
                rows.append(cells)
                lines.append(reader.line_num)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a valid CSV file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if header is None:
        raise DataError(f"{path}: empty file; expected a header row naming the columns")
    if not rows:
        raise DataError(f"{path}: has a header but no data rows")
    empty = [i + 1 for i, name in enumerate(header) if not name]
    if empty:
        raise DataError(f"{path}: header column {empty[0]} has no name; name every column")
    dupes = sorted({name for name in header if header.count(name) > 1})
    if dupes:
        raise DataError(
            f"{path}: duplicate column name(s) {', '.join(dupes)}; names must be unique"
        )
    return _RawFile(path, header, rows, lines)


def _columns_hint(header: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(header[:limit])
    return shown + (f", ... ({len(header)} in all)" if len(header) > limit else "")


def _column(f: _RawFile, name: str, key: str) -> int:
    if name not in f.header:
        # One column holding separators usually means a ';'- or tab-separated export.
        delimiter = len(f.header) == 1 and any(sep in f.header[0] for sep in ";\t|")
        hint = "; the file is probably not comma-separated: save it with ','" * delimiter
        raise DataError(
            f"{f.path}: no column {name!r} ({key}); columns are: {_columns_hint(f.header)}{hint}"
        )
    return f.header.index(name)


def _features(f: _RawFile, names: Sequence[str]) -> np.ndarray:
    """Parse the named columns as finite floats, pointing at the first bad cell otherwise."""
    out = np.empty((len(f.rows), len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        col = f.header.index(name)
        for i, row in enumerate(f.rows):
            cell = row[col]
            try:
                value = float(cell)
            except ValueError:
                if cell == "":
                    raise DataError(
                        f"{f.path}, line {f.lines[i]}: feature column {name!r} is empty; "
                        "fill in or drop rows with missing values"
                    ) from None
                raise DataError(
                    f"{f.path}: feature column {name!r} is not numeric ({cell!r} at line "
                    f"{f.lines[i]}); encode it as numbers or remove the column"
                ) from None
            if not math.isfinite(value):
                raise DataError(
                    f"{f.path}, line {f.lines[i]}: feature column {name!r} is {cell!r}; "
                    "features must be finite numbers (impute or drop NaN/inf rows)"
                )
            out[i, j] = value
    return out


def _labels(f: _RawFile, label: str) -> list[str]:
    col = _column(f, label, "data.label")
    values = [row[col] for row in f.rows]
    for i, v in enumerate(values):
        if v.lower() in _MISSING_LABELS:
            raise DataError(
                f"{f.path}, line {f.lines[i]}: label column {label!r} is missing ({v!r}); "
                "drop unlabelled rows"
            )
    return values


def _class_index(labels: Sequence[str], label: str, source: str) -> tuple[np.ndarray, list[str]]:
    """Map raw label strings to indices: numeric order if all are numbers, else text order.

    Numeric labels are canonicalised first so ``1`` and ``1.0`` are the same class.
    """
    try:
        numbers = [float(v) for v in labels]
        numeric = all(math.isfinite(x) for x in numbers)
    except ValueError:
        numeric = False
    if numeric:
        canon = [str(int(x)) if x.is_integer() else repr(x) for x in numbers]
        order = sorted(set(zip(numbers, canon, strict=True)))
        class_names = [name for _, name in order]
        names = canon
    else:
        class_names = sorted(set(labels))
        names = list(labels)
    if len(class_names) < 2:
        raise DataError(
            f"{source}: label column {label!r} has a single class {class_names[0]!r}; "
            "need at least 2 classes"
        )
    lookup = {name: i for i, name in enumerate(class_names)}
    return np.array([lookup[n] for n in names], dtype=np.int64), class_names


def _from_single_file(f: _RawFile, data: DataSection) -> Table:
    if data.partition == "site" and not data.site_column:
        raise ConfigError(
            f"data.partition = 'site' with one CSV file ({f.path}) needs data.site_column "
            "(the column naming each row's site), or make data.path a folder of per-site CSVs"
        )
    label_col = _column(f, data.label, "data.label")
    excluded = {label_col}
    sites = None
    site_names: tuple[str, ...] = ()
    site_sources: tuple[str, ...] = ()
    if data.site_column:
        site_col = _column(f, data.site_column, "data.site_column")
        if site_col == label_col:
            raise ConfigError(
                f"data.site_column and data.label both name column {data.label!r}; "
                "they must be different columns"
            )
        excluded.add(site_col)
        raw_sites = [row[site_col] for row in f.rows]
        for i, s in enumerate(raw_sites):
            if not s:
                raise DataError(
                    f"{f.path}, line {f.lines[i]}: site column {data.site_column!r} is empty; "
                    "every row needs a site"
                )
        site_names = tuple(sorted(set(raw_sites)))
        lookup = {s: i for i, s in enumerate(site_names)}
        sites = np.array([lookup[s] for s in raw_sites], dtype=np.int64)
        site_sources = tuple(f"{f.path} ({data.site_column} = {s!r})" for s in site_names)
    names = [h for i, h in enumerate(f.header) if i not in excluded]
    if not names:
        raise DataError(
            f"{f.path}: no feature columns besides the label {data.label!r}"
            + (f" and site {data.site_column!r}" if data.site_column else "")
        )
    y, class_names = _class_index(_labels(f, data.label), data.label, str(f.path))
    return Table(
        X=_features(f, names),
        y=y,
        feature_names=names,
        class_names=class_names,
        source=str(f.path),
        sites=sites,
        site_names=site_names,
        site_sources=site_sources,
    )


def _from_folder(files: list[_RawFile], data: DataSection) -> Table:
    first = files[0]
    _column(first, data.label, "data.label")
    dropped = {data.label, data.site_column} - {""}
    names = [h for h in first.header if h not in dropped]
    if not names:
        raise DataError(f"{first.path}: no feature columns besides the label {data.label!r}")
    expected = set(names)
    blocks, labels, sites = [], [], []
    for s, f in enumerate(files):
        _column(f, data.label, "data.label")
        have = set(f.header) - dropped
        if have != expected:
            missing = sorted(expected - have)
            extra = sorted(have - expected)
            detail = "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"extra {', '.join(extra)}" if extra else "",
                )
                if part
            )
            raise DataError(
                f"{f.path}: feature columns differ from {first.path.name} ({detail}); "
                "every site's CSV needs the same columns"
            )
        blocks.append(_features(f, names))
        labels += _labels(f, data.label)
        sites.append(np.full(len(f.rows), s, dtype=np.int64))
    stems = [f.path.stem for f in files]
    y, class_names = _class_index(labels, data.label, str(first.path.parent))
    return Table(
        X=np.concatenate(blocks),
        y=y,
        feature_names=names,
        class_names=class_names,
        source=str(first.path.parent),
        sites=np.concatenate(sites),
        site_names=tuple(stems),
        site_sources=tuple(str(f.path) for f in files),
    )
