"""Regenerate hospitals.csv: a small synthetic consortium export with real-world quirks.

    python examples/consortium/make_csv.py

300 patients from 5 hospitals in one file, as a consortium would collect them: a ``site``
column, a ``patient_id`` (an identifier, not a feature), the ``scanner`` vendor (categorical;
one hospital owns a single vendor, so its one-hot columns are constant there), a free-text
``notes`` column, a few empty cells, and a binary ``diagnosis``. Hospitals differ in case mix,
scanner fleet and the calibration of their lab assay, which is why examples/consortium.toml
standardises and imputes per site. Only the standard library is used, with a fixed seed, so
the file is byte-for-byte reproducible.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

OUT = Path(__file__).with_name("hospitals.csv")
SEED = 2024

# site: (patients, mean age, assay calibration factor, scanner fleet weights ge/philips/siemens)
SITES = {
    "st-marys": (80, 62.0, 1.00, (0.5, 0.3, 0.2)),
    "northgate": (70, 55.0, 1.15, (0.2, 0.5, 0.3)),
    "riverside": (60, 67.0, 0.90, (0.3, 0.2, 0.5)),
    "lakeview": (50, 59.0, 1.05, (1.0, 0.0, 0.0)),  # a single-vendor hospital
    "hillcrest": (40, 64.0, 1.25, (0.1, 0.6, 0.3)),
}
SCANNERS = ("ge", "philips", "siemens")
# Siemens reports lesions slightly larger: the vendor matters, so it is a useful feature.
LESION_BIAS = {"ge": 0.0, "philips": 0.5, "siemens": 1.5}
NOTES = (
    "routine screening",
    "referred by GP",
    "follow-up, prior imaging available",
    "patient reports pain",
    'second opinion requested; "urgent"',
    "family history of disease",
    "",
)
HEADER = [
    "patient_id", "site", "age", "bmi", "systolic_bp", "marker", "lesion_mm", "scanner",
    "notes", "diagnosis",
]  # fmt: skip
# (row number, column) cells left empty, as in a real export
EMPTY = {
    (7, "bmi"), (31, "systolic_bp"), (58, "marker"), (96, "bmi"), (120, "scanner"),
    (163, "lesion_mm"), (201, "bmi"), (240, "scanner"), (266, "systolic_bp"), (288, "marker"),
}  # fmt: skip


def _patient(rng: random.Random, site: str, number: int) -> dict[str, str]:
    _, mean_age, calibration, fleet = SITES[site]
    age = min(90.0, max(25.0, rng.gauss(mean_age, 11)))
    bmi = rng.gauss(27, 4.5)
    bp = rng.gauss(125 + 0.4 * (age - 60), 14)
    scanner = rng.choices(SCANNERS, weights=fleet)[0]
    risk = -0.5 + 0.06 * (age - 60) + 0.08 * (bmi - 27) + rng.gauss(0, 1.2)
    sick = rng.random() < 1 / (1 + math.exp(-risk))
    marker = calibration * max(0.1, rng.gauss(4.0 + 3.0 * sick, 1.6))  # assay units per site
    lesion = max(1.0, rng.gauss(9.0 + 6.0 * sick, 3.5) + LESION_BIAS[scanner])
    note = rng.choice(NOTES)
    if note and rng.random() < 0.3:
        note += f" (seen {rng.randint(1, 28)}/{rng.randint(1, 12)})"
    return {
        "patient_id": f"{site[:2].upper()}-{number:04d}",
        "site": site,
        "age": f"{age:.0f}",
        "bmi": f"{bmi:.1f}",
        "systolic_bp": f"{bp:.0f}",
        "marker": f"{marker:.2f}",
        "lesion_mm": f"{lesion:.1f}",
        "scanner": scanner,
        "notes": note,
        "diagnosis": str(int(sick)),
    }


def main() -> None:
    rng = random.Random(SEED)
    rows = [_patient(rng, site, k + 1) for site, (n, *_) in SITES.items() for k in range(n)]
    rng.shuffle(rows)  # sites interleaved, as in a pooled registry export
    for i, row in enumerate(rows):
        for j, column in EMPTY:
            if i == j:
                row[column] = ""
    with OUT.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
