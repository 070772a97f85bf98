"""Load a user's CSV data: one file with a site column, or a folder with one CSV per site.

This is the entry point for real deployments (each hospital exports a CSV). A real export has
identifiers, free text, categories and gaps, and a first run should list everything there is
to fix rather than stop at the first cell: problems with the cells are collected over all
files and reported in one one-line :class:`~secagg.errors.DataError`, one part per kind of
problem, each naming the file, lines and columns and the config key that handles it. No
pandas: the standard ``csv`` module is enough and keeps the dependency set small.

Rules:

* The first row is a header. ``data.label`` names the label column; labels may be numbers or
  text. Classes are sorted (numerically when every label is a number, else as text) over all
  sites together, so a class index means the same thing at every site.
* In a single file, ``data.site_column`` (when set) names each row's site; sites are sorted
  by name. In a folder, each ``*.csv`` file is one site named by its file stem (files sorted
  by name); a ``data.site_column`` present in those files is dropped rather than used.
* ``data.exclude`` columns (patient IDs, free text) are ignored: neither features nor errors.
* ``data.categorical`` columns are one-hot encoded against the category list in the config:
  one feature ``column=category`` per category, in the listed order. The list is shared by
  every site so that feature j means the same thing everywhere; it is never learned from the
  data, and a value outside it is an error. One-hot columns are standardised later like any
  feature; one that is constant at a site (a single-vendor hospital) has zero variance there
  and is only centred, to 0 (see :mod:`secagg.data.standardize`).
* Every other column is a numeric feature. Features keep the header order (of the first file,
  for a folder), each categorical column expanded in place.
* Missing cells are empty or spelled ``nan``, ``NA``, ``N/A``, ``null`` or ``none`` (in a
  categorical column only when that spelling is not one of its categories). ``inf`` is not
  missing but an error. ``data.missing`` decides:

  - ``error`` (default): list every missing feature cell and label (the first 20, then a
    count).
  - ``drop``: drop every row with a missing feature cell *or label* (an unlabelled row
    cannot be trained on); excluded columns do not count.
  - ``impute``: fill a numeric cell with the median of its column at the row's own site (a
    file without a site column is one site), a categorical cell with the site's most
    frequent category (ties: the first listed). A column empty at a whole site is an error.
    Never pooled across sites: each hospital can do this on its own export. The statistic
    is label-free and uses all of the site's rows, including those later held out for
    testing. Labels are never imputed (a missing label is an error).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from secagg.config import DataSection, check_csv_options
from secagg.data.table import Table
from secagg.errors import ConfigError, DataError

# Spellings read as "missing" (compared lower-case) rather than as a value or a class "nan".
_MISSING = frozenset({"", "nan", "na", "n/a", "null", "none"})

# Cells (or columns) listed per kind of problem before "... and N more": enough to see the
# pattern, short enough for a terminal.
_LIMIT = 20

# A text column with at most this many distinct, repeated values is suggested as categorical
# (rather than as an ID or free text to exclude) in the "not numeric" error.
_CATEGORICAL_HINT_MAX = 12


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
    check_csv_options(data)
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


def _line_list(lines: Sequence[int], limit: int = _LIMIT) -> str:
    """'line 5' or 'lines 5, 9, 12 ... and 3 more'."""
    shown = ", ".join(str(n) for n in lines[:limit])
    more = f" ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"line{'s' * (len(lines) > 1)} {shown}{more}"


def _toml(value: object) -> str:
    """``value`` in TOML syntax, for the config snippets that errors suggest."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (
            f"{k if re.fullmatch(r'[A-Za-z0-9_-]+', k) else _toml(k)} = {_toml(v)}"
            for k, v in value.items()
        )
        return "{" + ", ".join(items) + "}"
    return str(value)


# --------------------------------------------------------------------------------------------
# Where each row came from: file, line and site, for every message
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    """All rows of all files, in order, with the file, line and site of each."""

    files: list[_RawFile]
    file_of: np.ndarray
    line_of: np.ndarray
    site_of: np.ndarray
    site_labels: list[str]  # how messages name site s ("site 'north'", or the file)

    @classmethod
    def of(cls, files: list[_RawFile], sites: list[np.ndarray], labels: list[str]) -> _Rows:
        return cls(
            files=files,
            file_of=np.concatenate([np.full(len(f.rows), i) for i, f in enumerate(files)]),
            line_of=np.concatenate([np.array(f.lines, dtype=np.int64) for f in files]),
            site_of=np.concatenate(sites),
            site_labels=labels,
        )

    def __len__(self) -> int:
        return len(self.line_of)

    def cells(self, column: str) -> list[str]:
        """The column's cell in every row (every file has it: checked by the callers)."""
        out: list[str] = []
        for f in self.files:
            j = f.header.index(column)
            out += [row[j] for row in f.rows]
        return out

    def at(self, rows: Sequence[int]) -> str:
        """'line 5' / 'lines 5, 9' in one file; 'a.csv line 5, b.csv lines 2, 3' in several."""
        if len(self.files) == 1:
            return _line_list([int(self.line_of[r]) for r in rows], limit=len(rows))
        by_file: dict[int, list[int]] = {}
        for r in rows:
            by_file.setdefault(int(self.file_of[r]), []).append(int(self.line_of[r]))
        return ", ".join(
            f"{self.files[i].path.name} {_line_list(lines, limit=len(lines))}"
            for i, lines in by_file.items()
        )

    def listing(self, groups: Sequence[tuple[str, Sequence[int]]], limit: int = _LIMIT) -> str:
        """'<what> at lines 5, 9; <what> at line 3 ... and N more', at most ``limit`` rows."""
        parts, shown = [], 0
        for what, rows in groups:
            if shown >= limit:
                break
            take = list(rows[: limit - shown])
            shown += len(take)
            parts.append(f"{what} at {self.at(take)}")
        more = sum(len(rows) for _, rows in groups) - shown
        return "; ".join(parts) + (f" ... and {more} more" if more else "")


def _fail(source: str, problems: list[str]) -> None:
    """Raise one error holding every kind of problem found (numbered when more than one)."""
    if len(problems) == 1:
        raise DataError(f"{source}: {problems[0]}")
    if problems:
        numbered = " ".join(f"({i}) {p}." for i, p in enumerate(problems, 1))
        raise DataError(f"{source}: {len(problems)} kinds of problem: {numbered}")


# --------------------------------------------------------------------------------------------
# Entry points: one file or a folder, both assembled by _assemble
# --------------------------------------------------------------------------------------------


def _from_single_file(f: _RawFile, data: DataSection) -> Table:
    if data.partition == "site" and not data.site_column:
        raise ConfigError(
            f"data.partition = 'site' with one CSV file ({f.path}) needs data.site_column "
            "(the column naming each row's site), or make data.path a folder of per-site CSVs"
        )
    label_col = _column(f, data.label, "data.label")
    for name in data.exclude:
        _column(f, name, "data.exclude")
    for name in data.categorical:
        _column(f, name, "data.categorical")
    not_features = {data.label, *data.exclude}
    site_names: tuple[str, ...] = ()
    site_sources: tuple[str, ...] = ()
    if data.site_column:
        site_col = _column(f, data.site_column, "data.site_column")
        if site_col == label_col:
            raise ConfigError(
                f"data.site_column and data.label both name column {data.label!r}; "
                "they must be different columns"
            )
        not_features.add(data.site_column)
        raw_sites = [row[site_col] for row in f.rows]
        empty = [f.lines[i] for i, s in enumerate(raw_sites) if not s]
        if empty:
            raise DataError(
                f"{f.path}: site column {data.site_column!r} is empty at {_line_list(empty)}; "
                "every row needs a site"
            )
        site_names = tuple(sorted(set(raw_sites)))
        lookup = {s: i for i, s in enumerate(site_names)}
        sites = np.array([lookup[s] for s in raw_sites], dtype=np.int64)
        site_sources = tuple(f"{f.path} ({data.site_column} = {s!r})" for s in site_names)
        labels = [f"site {s!r}" for s in site_names]
    else:  # one site: the file
        sites = np.zeros(len(f.rows), dtype=np.int64)
        labels = [f.path.name]
    names = [h for h in f.header if h not in not_features]
    if not names:
        raise DataError(
            f"{f.path}: no feature columns besides the label {data.label!r}"
            + (f" and site {data.site_column!r}" if data.site_column else "")
            + (" and the data.exclude columns" if data.exclude else "")
        )
    rows = _Rows.of([f], [sites], labels)
    return _assemble(rows, names, data, str(f.path), site_names, site_sources)


def _from_folder(files: list[_RawFile], data: DataSection) -> Table:
    first = files[0]
    for f in files:
        _column(f, data.label, "data.label")
        for name in data.categorical:
            _column(f, name, "data.categorical")
    for name in data.exclude:
        if not any(name in f.header for f in files):
            raise DataError(
                f"{first.path.parent}: no column {name!r} (data.exclude) in any of the "
                f"{len(files)} CSV files; columns are: {_columns_hint(first.header)}"
            )
    dropped = {data.label, data.site_column, *data.exclude} - {""}
    names = [h for h in first.header if h not in dropped]
    if not names:
        raise DataError(f"{first.path}: no feature columns besides the label {data.label!r}")
    expected = set(names)
    for f in files:
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
                "every site's CSV needs the same columns (list others in data.exclude)"
            )
    stems = tuple(f.path.stem for f in files)
    rows = _Rows.of(
        files,
        [np.full(len(f.rows), s, dtype=np.int64) for s, f in enumerate(files)],
        [f"site {s!r}" for s in stems],
    )
    sources = tuple(str(f.path) for f in files)
    return _assemble(rows, names, data, str(first.path.parent), stems, sources)


# --------------------------------------------------------------------------------------------
# Cells to numbers: collect every problem, then drop or impute missing cells
# --------------------------------------------------------------------------------------------


def _is_missing(cell: str) -> bool:
    return cell.lower() in _MISSING


def _numeric(cells: list[str]) -> tuple[np.ndarray, list[int], list[int]]:
    """Values (NaN where missing), rows with text that is not a number, rows with ±inf."""
    values = np.full(len(cells), np.nan)
    text, infinite = [], []
    for i, cell in enumerate(cells):
        if _is_missing(cell):
            continue
        try:
            value = float(cell)
        except ValueError:
            text.append(i)
            continue
        if math.isinf(value):
            infinite.append(i)
        elif not math.isnan(value):
            values[i] = value
    return values, text, infinite


def _codes(cells: list[str], categories: list[str]) -> tuple[np.ndarray, dict[str, list[int]]]:
    """Category index per row (-1: missing, -2: outside the list) and the rows of each outsider."""
    lookup = {c: k for k, c in enumerate(categories)}
    codes = np.full(len(cells), -1, dtype=np.int64)
    unknown: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):
        if cell in lookup:
            codes[i] = lookup[cell]
        elif not _is_missing(cell):
            codes[i] = -2
            unknown.setdefault(cell, []).append(i)
    return codes, unknown


def _not_numeric_problem(found: list[tuple[str, list[int], list[str]]], rows: _Rows) -> str:
    """One part naming every text column, with a config snippet for exclude/categorical.

    A column with few distinct, repeated values is suggested as categorical, other text
    columns as excluded; one that is mostly numbers likely has typos to fix instead.
    """
    described, exclude, categorical = [], [], {}
    for name, bad, cells in found:
        n_present = sum(not _is_missing(c) for c in cells)
        typo = len(bad) * 2 < n_present
        detail = f"{cells[bad[0]]!r} at {rows.at(bad[:1])}"
        detail += f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        detail += "; the other cells are numbers" if typo else ""
        described.append((name, detail))
        values = sorted({c for c in cells if not _is_missing(c)})
        if typo:
            continue
        if len(values) <= _CATEGORICAL_HINT_MAX and 2 * len(values) <= n_present:
            categorical[name] = values
        else:
            exclude.append(name)
    if len(described) == 1:
        head = f"feature column {described[0][0]!r} is not numeric ({described[0][1]})"
    else:
        head = "feature columns are not numeric: " + ", ".join(
            f"{name!r} ({detail})" for name, detail in described
        )
    example = ", ".join(
        part
        for part in (
            f"data.exclude = {_toml(exclude)}" if exclude else "",
            f"data.categorical = {_toml(categorical)}" if categorical else "",
        )
        if part
    )
    return (
        f"{head}; list ID and free-text columns in data.exclude and categorical ones in "
        "data.categorical with every category any site uses"
        + (f" (e.g. {example})" if example else "")
        + ", or fix the cells of a numeric column"
    )


@dataclass
class _Feature:
    """A source column: numbers (NaN: missing) or category codes (-1: missing, -2: outside)."""

    name: str
    values: np.ndarray
    categories: list[str] | None = None

    @property
    def missing(self) -> np.ndarray:
        return self.values == -1 if self.categories is not None else np.isnan(self.values)


def _assemble(
    rows: _Rows,
    names: list[str],
    data: DataSection,
    source: str,
    site_names: tuple[str, ...],
    site_sources: tuple[str, ...],
) -> Table:
    """Parse the feature and label cells of ``rows``; report, drop or impute what is missing.

    ``site_names`` is empty for an untagged file (then it is one site for imputation).
    """
    problems: list[str] = []
    features: list[_Feature] = []
    text: list[tuple[str, list[int], list[str]]] = []
    infinite: list[tuple[str, list[int]]] = []
    unknown: list[tuple[str, list[int]]] = []
    for name in names:
        cells = rows.cells(name)
        categories = data.categorical.get(name)
        if categories is None:
            values, bad, inf = _numeric(cells)
            if bad:
                text.append((name, bad, cells))
                continue  # its gaps are not reported: the column is likely to be excluded
            infinite += [(f"{cells[i]!r} in column {name!r}", [i]) for i in inf]
            features.append(_Feature(name, values))
        else:
            codes, outside = _codes(cells, categories)
            unknown += [(f"{v!r} in column {name!r}", r) for v, r in outside.items()]
            features.append(_Feature(name, codes, categories))
    if text:
        problems.append(_not_numeric_problem(text, rows))
    if unknown:
        lists = "; ".join(f"{n}: {', '.join(c)}" for n, c in data.categorical.items())
        problems.append(
            f"values outside data.categorical ({lists}): {rows.listing(unknown)}; add them "
            "to the list that every site shares or correct the cells (values are "
            "case-sensitive)"
        )
    if infinite:
        problems.append(
            f"infinite feature values: {rows.listing(infinite)}; features must be finite "
            "numbers: fix the export (or empty the cells and set data.missing)"
        )

    label_cells = rows.cells(data.label)
    no_label = np.array([_is_missing(c) for c in label_cells], dtype=bool)
    gaps = [(f"column {f.name!r}", np.flatnonzero(f.missing).tolist()) for f in features]
    gaps = [(what, r) for what, r in gaps if r]
    if data.missing == "error" and gaps:
        n = sum(len(r) for _, r in gaps)
        problems.append(
            f"{n} empty or NaN feature cell{'s' * (n > 1)}: {rows.listing(gaps)}; set "
            'data.missing = "drop" to drop those rows or "impute" to fill each from its '
            "site (median, or most frequent category)"
        )
    if data.missing != "drop" and no_label.any():
        never = "labels are never imputed: " if data.missing == "impute" else ""
        where = rows.listing(
            [(f"label column {data.label!r} is missing", no_label.nonzero()[0].tolist())]
        )
        problems.append(f'{where}; {never}drop unlabelled rows or set data.missing = "drop"')
    if data.missing == "impute":
        problems += _impute(features, rows)
    _fail(source, problems)

    keep = np.ones(len(rows), dtype=bool)
    if data.missing == "drop":
        keep = ~no_label
        for f in features:
            keep &= ~f.missing
        emptied = [
            site for s, site in enumerate(rows.site_labels) if not keep[rows.site_of == s].any()
        ]
        if emptied:
            raise DataError(
                f'{source}: data.missing = "drop" leaves no rows at {", ".join(emptied)} '
                "(every row there misses a feature or the label); use data.missing = "
                '"impute", or list a mostly empty column in data.exclude'
            )
    X, feature_names = _encode(features, keep)
    clash = sorted({n for n in feature_names if feature_names.count(n) > 1})
    if clash:
        raise DataError(
            f"{source}: one-hot feature name(s) {', '.join(clash)} clash with existing columns; "
            "rename the column"
        )
    kept_labels = [c for c, k in zip(label_cells, keep, strict=True) if k]
    y, class_names = _class_index(kept_labels, data.label, source)
    return Table(
        X=X,
        y=y,
        feature_names=feature_names,
        class_names=class_names,
        source=source,
        sites=rows.site_of[keep] if site_names else None,
        site_names=site_names,
        site_sources=site_sources,
    )


def _impute(features: list[_Feature], rows: _Rows) -> list[str]:
    """Fill missing cells in place from the row's own site; the problems it cannot fill."""
    empty: list[str] = []
    for f in features:
        missing = f.missing
        if not missing.any():
            continue
        for s, site in enumerate(rows.site_labels):
            at_site = rows.site_of == s
            holes = at_site & missing
            if not holes.any():
                continue
            present = f.values[at_site & ~missing]
            if f.categories is not None:
                present = present[present >= 0]  # not the values outside the list
            if len(present) == 0:
                empty.append(f"{f.name!r} at {site}")
            elif f.categories is None:
                f.values[holes] = np.median(present)
            else:  # most frequent; argmax takes the first listed category on ties
                counts = np.bincount(present, minlength=len(f.categories))
                f.values[holes] = int(np.argmax(counts))
    if not empty:
        return []
    more = f" ... and {len(empty) - _LIMIT} more" if len(empty) > _LIMIT else ""
    return [
        'data.missing = "impute" has nothing to fill from: no value at all in column '
        f"{', '.join(empty[:_LIMIT])}{more}; fill the column in at that site or list it in "
        "data.exclude"
    ]


def _encode(features: list[_Feature], keep: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The kept rows as float64 features, categorical columns one-hot in the listed order."""
    blocks, names = [], []
    for f in features:
        if f.categories is None:
            blocks.append(f.values[keep, None])
            names.append(f.name)
        else:
            blocks.append(np.eye(len(f.categories))[f.values[keep]])
            names += [f"{f.name}={c}" for c in f.categories]
    return np.hstack(blocks).astype(np.float64), names


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
