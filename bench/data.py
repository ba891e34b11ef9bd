"""Generated test data under bench/data/: photo-like JPEGs and cars CSVs.

Everything is seeded, so a second run reuses the files of the first (each is written to a
temporary name and renamed, so an interrupted run never leaves a half file behind).

Photo-like means: colour gradients, a few dozen blurred shapes and film-grain noise, so a
1600×1200 q85 JPEG weighs ~400 KB and a 4000×3000 one ~2.6 MB, like real photos, and the
decoder and encoder do realistic work.
"""

import csv
import io
import random
from multiprocessing import Pool
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from .common import DATA

ORIENTATION = 0x0112
SIDEWAYS = 6  # EXIF orientation 6: display = stored pixels rotated 90° clockwise
MARKER = (255, 0, 0)  # painted in the stored top-left corner of rotated test images
WORDS = (
    "red",
    "blue",
    "green",
    "silver",
    "black",
    "white",
    "estate",
    "saloon",
    "coupe",
    "roadster",
    "hatchback",
    "diesel",
    "petrol",
    "hybrid",
    "electric",
    "quiet",
    "fast",
    "family",
    "city",
    "motorway",
    "boot",
    "seats",
    "leather",
    "alloy",
    "wheels",
    "sunroof",
    "manual",
    "automatic",
    "low",
    "mileage",
    "one",
    "owner",
    "service",
    "history",
    "garage",
    "kept",
    "spotless",
    "economical",
)


def photo(width: int, height: int, seed: int, *, sigma: float = 12) -> Image.Image:
    rnd = random.Random(seed)
    linear = Image.linear_gradient("L").resize((width, height))
    radial = Image.radial_gradient("L").resize((width, height))
    channels = []
    for _ in range(3):
        lo, hi = rnd.randint(40, 200), rnd.randint(40, 200)
        mixed = Image.blend(linear, radial, rnd.random())
        channels.append(mixed.point(lambda v, lo=lo, hi=hi: lo + (hi - lo) * v // 255))
    img = Image.merge("RGB", channels)
    draw = ImageDraw.Draw(img)
    for _ in range(rnd.randint(25, 40)):
        x0, y0 = rnd.randrange(width), rnd.randrange(height)
        x1 = x0 + rnd.randint(width // 20, width // 3)
        y1 = y0 + rnd.randint(height // 20, height // 3)
        colour = tuple(rnd.randrange(256) for _ in range(3))
        kind = rnd.randrange(3)
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            points = [
                (rnd.randrange(width), rnd.randrange(height)) for _ in range(rnd.randint(3, 6))
            ]
            draw.polygon(points, fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(max(1, width // 800)))
    coarse = Image.effect_noise((width // 4, height // 4), sigma * 2).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    grain = Image.blend(coarse, Image.effect_noise((width, height), sigma), 0.5)
    return ImageChops.add(img, Image.merge("RGB", (grain, grain, grain)), 1.0, -128)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _jpeg(img: Image.Image, *, orientation: int | None = None, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    extra = {}
    if orientation:
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        extra["exif"] = exif.tobytes()
    img.save(buf, "JPEG", quality=quality, **extra)
    return buf.getvalue()


def _make_import_image(args: tuple[Path, int]) -> None:
    path, index = args
    img = photo(1600, 1200, seed=index)
    # Every tenth picture is a phone photo held sideways.
    _write_atomic(path, _jpeg(img, orientation=SIDEWAYS if index % 10 == 0 else None))


def import_images(count: int) -> list[Path]:
    """`count` distinct 1600×1200 q85 JPEGs (every tenth with EXIF orientation 6)."""
    folder = DATA / "images" / "1600x1200"
    paths = [folder / f"car-{i:05d}.jpg" for i in range(1, count + 1)]
    missing = [(p, i) for i, p in enumerate(paths, start=1) if not p.exists()]
    if missing:
        with Pool(2) as pool:
            pool.map(_make_import_image, missing, chunksize=4)
    return paths


def big_images() -> dict[str, Path]:
    """4000×3000 q85 JPEGs: `upright`, and `sideways` (orientation 6, red stored top-left)."""
    folder = DATA / "images" / "4000x3000"
    paths = {"upright": folder / "upright.jpg", "sideways": folder / "sideways.jpg"}
    if not paths["upright"].exists():
        _write_atomic(paths["upright"], _jpeg(photo(4000, 3000, seed=4000)))
    if not paths["sideways"].exists():
        img = photo(4000, 3000, seed=4001)
        ImageDraw.Draw(img).rectangle((0, 0, 599, 599), fill=MARKER)
        _write_atomic(paths["sideways"], _jpeg(img, orientation=SIDEWAYS))
    return paths


def _description(rnd: random.Random) -> str:
    return " ".join(rnd.choices(WORDS, k=rnd.randint(8, 16))).capitalize() + "."


def rows_csv(count: int) -> Path:
    """`count` rows of id,title,description,image with no image (the bulk benchmarks)."""
    path = DATA / "csv" / f"cars-{count}.csv"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    rnd = random.Random(count)
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "title", "description", "image"])
        for i in range(1, count + 1):
            title = f"{rnd.choice(WORDS).capitalize()} {rnd.choice(WORDS)} {i}"
            writer.writerow([f"car-{i}", title, _description(rnd), ""])
    tmp.replace(path)
    return path


def images_csv(images: list[Path], base_url: str, folder: Path) -> Path:
    """One row per image, its URL on the image server at `base_url`."""
    path = folder / f"images-{len(images)}.csv"
    rnd = random.Random(len(images))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "title", "description", "image"])
        for i, image in enumerate(images, start=1):
            title = f"{rnd.choice(WORDS).capitalize()} {rnd.choice(WORDS)} {i}"
            writer.writerow([f"car-{i}", title, _description(rnd), f"{base_url}/{image.name}"])
    return path
