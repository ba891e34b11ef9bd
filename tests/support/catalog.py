"""Small real catalogues on disk: a CSV and the images it names."""

import csv
import io
from pathlib import Path

from tests.support.images import jpeg_bytes, photo_like, png_bytes

HEADER = ("id", "title", "description", "image")


def write_csv(path: Path, rows: list[list[str]], header=HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def csv_bytes(rows: list[list[str]], header=HEADER) -> bytes:
    """A CSV file's bytes (as uploaded to the imports API or the admin)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def small_catalog(folder: Path) -> Path:
    """Three images (large JPEG, RGBA PNG, small JPEG) and a fourth car without one.

    Returns the folder; the CSV is `folder / "cars.csv"`, naming images by relative path.
    """
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "a.jpg").write_bytes(photo_like(1600, 1200, seed=1))
    (folder / "img" / "b.png").write_bytes(png_bytes(300, 200, mode="RGBA"))
    (folder / "img" / "c.jpg").write_bytes(jpeg_bytes(800, 600))
    write_csv(
        folder / "cars.csv",
        [
            ["1", "Alpha", "First car", "img/a.jpg"],
            ["2", "Beta", "Second car", "img/b.png"],
            ["3", "Gamma", "Third car", "img/c.jpg"],
            ["4", "Delta", "No image", ""],
        ],
    )
    return folder
