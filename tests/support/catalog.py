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


PICTURES_HEADER = ("id", "title", "description", "images", "Colour", "Mileage", "Note")
ROADSTER_DESCRIPTION = (
    "<p>A <b>green</b> roadster.</p><ul><li>Soft top</li><li>Heated seats</li></ul>"
    '<script>alert("stolen")</script>'
    '<p onclick="steal()">Ask us <a href="javascript:alert(1)">here</a>'
    ' or <a href="https://example.com/aurora">online</a>.</p>'
)


def serve_photos(server, count: int, *, width: int = 1000, height: int = 750) -> list[str]:
    """`count` distinct photo-like JPEGs served by `server` (a LocalHTTPServer) at
    /photos/1.jpg, /photos/2.jpg, ...; their URLs. Wider than the mobile platform's box,
    so each has a mobile and a larger web rendition."""
    urls = []
    for n in range(1, count + 1):
        path = f"/photos/{n}.jpg"
        server.add(path, photo_like(width, height, seed=n), headers={"Content-Type": "image/jpeg"})
        urls.append(server.url(path))
    return urls


def pictures_catalog(folder: Path, server) -> Path:
    """A feed of two cars whose pictures `server` serves, as shops export them: a list of
    URLs in one `images` cell, the description in HTML, further columns as attributes.

    "Aurora Roadster" has three pictures, and a description that carries a script, an
    event handler and a `javascript:` link (the import must sanitise them away).
    "Harbour Van" has a picture, then one the server does not have (404).
    Returns the CSV's path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    first, second, third, fourth = serve_photos(server, 4)
    return write_csv(
        folder / "cars.csv",
        [
            [
                "roadster",
                "Aurora Roadster",
                ROADSTER_DESCRIPTION,
                f"{first},{second},{third}",
                "Racing green",
                "12 000 km",
                "<b>x</b>",
            ],
            [
                "van",
                "Harbour Van",
                "Room for a boat.\nAnd the trailer.",
                f"{fourth},{server.url('/photos/gone.jpg')}",
                "White",
                "80 000 km",
                "",
            ],
        ],
        header=PICTURES_HEADER,
    )
