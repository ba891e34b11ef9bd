"""Regenerate the bundled sample images (they are committed; run only to change them).

    .venv/bin/python sample/generate.py

Pictures are drawn, not downloaded, so `make run` needs no internet. A few are made
awkward on purpose (EXIF rotation, CMYK, transparency) to show the pipeline handles them.
"""

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent / "images"

CARS = [
    ("aurora-gt", (200, 30, 40)),
    ("boreal-estate", (30, 90, 170)),
    ("cinder-coupe", (40, 40, 40)),
    ("dune-roadster", (220, 170, 60)),
    ("ember-hatch", (230, 100, 20)),
    ("fjord-van", (240, 240, 240)),
    ("glacier-suv", (150, 200, 230)),
    ("harbor-sedan", (20, 60, 90)),
    ("iris-compact", (120, 60, 160)),
    ("juniper-pickup", (60, 120, 60)),
    ("kestrel-sport", (250, 210, 0)),
    ("lumen-ev", (230, 230, 250)),
    ("meridian-wagon", (130, 90, 60)),
    ("nova-cabrio", (255, 120, 160)),
    ("onyx-limo", (15, 15, 20)),
    ("pampas-rally", (180, 140, 90)),
    ("quartz-city", (200, 200, 210)),
]


def draw_car(color: tuple[int, int, int], seed: int, size=(1200, 800)) -> Image.Image:
    rng = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size)
    d = ImageDraw.Draw(img)
    for y in range(h):  # sky to ground
        t = y / h
        sky = (int(90 + 120 * t), int(150 + 80 * t), int(230 - 30 * t))
        d.line([(0, y), (w, y)], fill=sky if y < h * 0.62 else (70, 72, 78))
    for _ in range(6):  # clouds
        x, y = rng.randint(0, w), rng.randint(20, int(h * 0.35))
        d.ellipse([x - 90, y - 25, x + 90, y + 25], fill=(245, 245, 250))
    d.rectangle([0, int(h * 0.78), w, int(h * 0.80)], fill=(230, 230, 230))  # road line
    body = [int(w * 0.15), int(h * 0.50), int(w * 0.85), int(h * 0.72)]
    d.rounded_rectangle(body, radius=40, fill=color)
    d.rounded_rectangle(
        [int(w * 0.30), int(h * 0.36), int(w * 0.68), int(h * 0.54)], radius=50, fill=color
    )
    d.rounded_rectangle(
        [int(w * 0.34), int(h * 0.39), int(w * 0.64), int(h * 0.51)],
        radius=30,
        fill=(170, 210, 240),
    )
    for cx in (0.30, 0.70):
        x, y, r = int(w * cx), int(h * 0.72), int(h * 0.08)
        d.ellipse([x - r, y - r, x + r, y + r], fill=(20, 20, 20))
        d.ellipse([x - r // 2, y - r // 2, x + r // 2, y + r // 2], fill=(180, 180, 180))
    return img.filter(ImageFilter.SMOOTH)


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for seed, (name, color) in enumerate(CARS):
        draw_car(color, seed).save(HERE / f"{name}.jpg", quality=82, optimize=True)
    # A phone photo stored sideways, with an EXIF orientation tag saying so.
    sideways = draw_car((0, 150, 140), 100).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(HERE / "rotated-phone-photo.jpg", quality=82, exif=exif.tobytes())
    # A print-shop CMYK JPEG.
    draw_car((200, 0, 90), 101).convert("CMYK").save(HERE / "print-cmyk.jpg", quality=82)
    # A PNG with transparency (composited on white in renditions).
    png = draw_car((90, 90, 200), 102, size=(900, 600)).convert("RGBA")
    alpha = Image.new("L", png.size, 255)
    ImageDraw.Draw(alpha).rectangle([0, 0, png.width, int(png.height * 0.3)], fill=0)
    png.putalpha(alpha)
    png.save(HERE / "transparent-sky.png", optimize=True)
    (HERE / "not-an-image.jpg").write_text("This file is text, not a JPEG.\n")


if __name__ == "__main__":
    main()
