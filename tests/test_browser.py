"""The gallery and the admin in a real browser: headless Chromium (Debian's package)
driven by Playwright, against the app served by pytest-django's live server.

The gallery tests import the bundled sample exactly as `make run` does. The two tests of
window widths also save the README's screenshots (UPDATE_SCREENSHOTS=1). A car's page is
tested on a feed with three pictures per car, fetched from a local HTTP server.
"""

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from cars.models import Car
from gallery import views
from imports.models import ImportJob
from imports.services import run_import
from tests.support.browser import CHROMIUM, LAUNCH_ARGS, require_browser
from tests.support.catalog import pictures_catalog
from tests.support.images import photo_like

pytestmark = pytest.mark.django_db(transaction=True)

# The README's screenshots are refreshed with UPDATE_SCREENSHOTS=1 (make screenshots);
# other runs write them to the test's tmp folder, leaving the working tree clean.
DOCS_SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
SAMPLE_CARS = 25
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def chromium():
    require_browser()
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API keeps an asyncio loop on this thread, which Django takes
        # for an async context: database setup, the tests' ORM calls and the flush after
        # each test are plain synchronous code all the same.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            yield browser
            browser.close()


@pytest.fixture
def window(chromium) -> Iterator[Callable]:
    """window(width, height) -> a new page in a fresh browser context of that size."""
    contexts = []

    def open_window(width: int, height: int = 900):
        context = chromium.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_window
    for context in contexts:
        context.close()


@pytest.fixture
def sample(live_server) -> dict[str, Car]:
    report = run_import(workers=4)
    assert (report.counts.created, report.counts.images_failed) == (SAMPLE_CARS, 4)
    return {car.title: car for car in Car.objects.all()}


def absolute(live_server, car: Car, platform: str) -> str:
    return live_server.url + default_storage.url(car.renditions[platform]["name"])


def titles(page) -> list[str]:
    return page.locator(".card__title").all_inner_texts()


def wait_for_pictures(page, *, visible_only: bool) -> list[dict]:
    """Bring each picture into view (they load lazily), wait until it has finished
    loading, and return what the browser made of every one."""
    pictures = page.locator(".card img")
    if visible_only:
        page.wait_for_function(
            """() => [...document.querySelectorAll('.card img')]
                .filter(img => img.getBoundingClientRect().top < innerHeight)
                .every(img => img.complete)"""
        )
    else:
        for index in range(pictures.count()):
            picture = pictures.nth(index)
            picture.scroll_into_view_if_needed()
            page.wait_for_function("img => img.complete", arg=picture.element_handle())
    return pictures.evaluate_all(
        """imgs => imgs.map(img => ({
            alt: img.alt, src: img.currentSrc, width: img.naturalWidth,
            lazy: img.loading}))"""
    )


# --------------------------------------------------------------------------- the gallery


def test_the_gallery_shows_the_sample_cars_and_every_picture_loads(window, live_server, sample):
    page = window(1280)
    page.goto(live_server.url + "/")

    in_order = list(Car.objects.order_by("id").values_list("title", flat=True))
    assert titles(page) == in_order[: views.PAGE_SIZE]
    pictures = wait_for_pictures(page, visible_only=False)
    with_pictures = [t for t in in_order[: views.PAGE_SIZE] if sample[t].renditions]
    assert [p["alt"] for p in pictures] == with_pictures
    for picture in pictures:
        assert picture["width"] > 0, f"{picture['alt']}: {picture['src']} did not load"
        assert picture["lazy"] == "lazy"
    # The cars without a picture say why, in words.
    missing = page.locator(".card", has=page.locator(".placeholder"))
    assert missing.count() == len(in_order[: views.PAGE_SIZE]) - len(with_pictures)
    text = page.locator(".card", has_text="FTP Image").locator(".placeholder").inner_text()
    assert text == "No picture: the image address is not http or https."


def test_searching_from_the_keyboard_narrows_the_grid(window, live_server, sample):
    page = window(1280)
    page.goto(live_server.url + "/")

    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.textContent") == "Skip to the cars"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.type("yellow")
    page.keyboard.press("Enter")

    page.wait_for_url(re.compile(r"\?search=yellow$"))
    assert sorted(titles(page)) == ["Dune Roadster", "Kestrel Sport"]  # ranked by relevance
    assert page.locator(".summary").inner_text() == "2 cars match “yellow”"
    assert all(p["width"] > 0 for p in wait_for_pictures(page, visible_only=False))

    page.get_by_role("link", name="Show all").click()
    page.wait_for_url(live_server.url + "/")
    assert len(titles(page)) == views.PAGE_SIZE


def test_paging_moves_through_the_catalogue_and_back(window, live_server, sample):
    page = window(1280)
    page.goto(live_server.url + "/")
    first_page = titles(page)

    page.get_by_role("link", name="Next →").click()
    page.wait_for_url(re.compile(r"\?page=2$"))
    assert titles(page) == ["No Image Yet"]
    assert page.locator("[aria-current=page]").inner_text() == "2"

    previous = page.get_by_role("link", name="← Previous")
    previous.focus()  # links are reachable and work from the keyboard
    page.keyboard.press("Enter")
    page.wait_for_url(live_server.url + "/")
    assert titles(page) == first_page


@pytest.mark.parametrize(
    ("width", "height", "platform", "screenshot"),
    [(375, 812, "mobile", "gallery-mobile.png"), (1280, 900, "web", "gallery-desktop.png")],
)
def test_a_window_picks_the_rendition_of_its_platform(
    window, live_server, sample, width, height, platform, screenshot, tmp_path
):
    page = window(width, height)
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    page.goto(live_server.url + "/")

    pictures = wait_for_pictures(page, visible_only=True)

    car = sample["Aurora GT"]
    first = pictures[0]
    assert first["alt"] == "Aurora GT"
    assert first["src"] == absolute(live_server, car, platform)
    assert first["width"] > 0
    other = "web" if platform == "mobile" else "mobile"
    assert absolute(live_server, car, platform) in fetched
    assert absolute(live_server, car, other) not in fetched  # one download per picture
    folder = DOCS_SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / screenshot))
    assert (folder / screenshot).stat().st_size > 10_000


# --------------------------------------------------------------------------- a car's page


@pytest.fixture
def pictures(live_server, http_server, tmp_path) -> dict[str, Car]:
    """tests.support.catalog.pictures_catalog through the real importer: "Aurora Roadster"
    with three pictures, "Harbour Van" with one and one the server does not have."""
    report = run_import(source=str(pictures_catalog(tmp_path / "feed", http_server)), workers=2)
    assert report.summary().endswith("images: 4 ok, 1 failed"), report.summary()
    return {car.title: car for car in Car.objects.all()}


def console_errors(page) -> list[str]:
    """Errors the page logs or throws from now on (a list that fills as they come)."""
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def load_every_photo(page) -> list[dict]:
    """Scroll each picture of a car's page into view (all but the first load lazily),
    wait until it has finished loading, and return what the browser made of each."""
    photos = page.locator(".photo img")
    for index in range(photos.count()):
        photo = photos.nth(index)
        photo.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete", arg=photo.element_handle())
    return photos.evaluate_all(
        """imgs => imgs.map(img => ({
            alt: img.alt, src: img.currentSrc, width: img.naturalWidth, lazy: img.loading}))"""
    )


def rendition_of(live_server, renditions: dict, platform: str) -> str:
    return live_server.url + default_storage.url(renditions[platform]["name"])


@pytest.mark.parametrize(
    ("width", "height", "lead_platform"), [(375, 812, "mobile"), (1280, 900, "web")]
)
def test_a_card_opens_the_car_page_where_every_picture_loads(
    window, live_server, pictures, width, height, lead_platform, tmp_path
):
    page = window(width, height)
    errors = console_errors(page)
    page.goto(live_server.url + "/?search=roadster")

    # The whole card is the link, not only its title.
    page.locator(".card", has_text="Aurora Roadster").click()

    car = pictures["Aurora Roadster"]
    page.wait_for_url(f"{live_server.url}/cars/{car.pk}/?search=roadster")
    assert page.locator("h1").inner_text() == "Aurora Roadster"
    lead = page.locator(".photo img").first
    page.wait_for_function("img => img.complete", arg=lead.element_handle())
    assert lead.evaluate("img => img.naturalWidth") > 0, "the first picture loads at once"
    photos = load_every_photo(page)
    assert [p["alt"] for p in photos] == [f"Aurora Roadster, picture {n} of 3" for n in (1, 2, 3)]
    assert [p["lazy"] for p in photos] == ["eager", "lazy", "lazy"]
    further = car.more_pictures.select_related("picture").order_by("position")
    expected = [car.renditions, *(p.picture.renditions for p in further)]
    # The first picture fills the column: the web rendition on a desktop-sized window;
    # the others, two by two from 40rem, are small enough for the mobile one everywhere.
    platforms = [lead_platform, "mobile", "mobile"]
    for photo, renditions, platform in zip(photos, expected, platforms, strict=True):
        assert photo["width"] > 0, f"{photo['alt']}: {photo['src']} did not load"
        assert photo["src"] == rendition_of(live_server, renditions, platform), photo["alt"]
    rows = page.locator(".attributes tr")
    assert rows.all_inner_texts() == [
        "Colour\tRacing green",
        "Mileage\t12 000 km",
        "Note\t<b>x</b>",
    ]
    assert page.locator(".prose b").inner_text() == "green"  # the sanitised HTML, as HTML
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "no sideways scroll"
    info, column = page.locator(".car__info").bounding_box(), page.locator(".photos").bounding_box()
    if width >= 1024:  # 64rem: the details beside the pictures
        assert info["x"] >= column["x"] + column["width"]
    else:  # one column: the details under the pictures
        assert info["y"] >= column["y"] + column["height"]

    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / f"car-{width}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    page.get_by_role("link", name="← Cars matching “roadster”").click()
    page.wait_for_url(live_server.url + "/?search=roadster")
    assert titles(page) == ["Aurora Roadster"]
    assert errors == []


def test_a_picture_that_failed_shows_why_on_the_car_page(window, live_server, pictures):
    page = window(1280)
    errors = console_errors(page)
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="Harbour Van").click()

    page.wait_for_url(f"{live_server.url}/cars/{pictures['Harbour Van'].pk}/")
    photos = load_every_photo(page)
    assert len(photos) == 1 and photos[0]["width"] > 0
    placeholder = page.locator(".photo .placeholder")
    assert placeholder.inner_text() == "No picture: the image server answered with an error."
    assert placeholder.is_visible()
    page.go_back()
    page.wait_for_url(live_server.url + "/")
    assert errors == []


# --------------------------------------------------------------------------- the admin


def test_an_admin_logs_in_imports_an_uploaded_csv_and_sees_it_succeed(
    window, live_server, django_user_model, http_server, tmp_path
):
    django_user_model.objects.create_superuser("ada", "ada@example.com", "a-long-passphrase")
    http_server.add("/red.jpg", photo_like(800, 600), headers={"Content-Type": "image/jpeg"})
    csv_file = tmp_path / "new cars.csv"
    csv_file.write_text(
        "id,title,description,image\n"
        f"b1,Browser Coupe,Uploaded through the admin,{http_server.url('/red.jpg')}\n"
        f"b2,Browser Van,Its picture is gone,{http_server.url('/gone.jpg')}\n"
        ",,A row without a title,\n",
        encoding="utf-8",
    )
    page = window(1280)

    page.goto(live_server.url + "/admin/")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("a-long-passphrase")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Import jobs").first.click()
    page.get_by_role("link", name="Import CSV").click()
    page.get_by_label("or a CSV file").set_input_files(csv_file)
    page.get_by_role("button", name="Start import").click()

    page.wait_for_url(re.compile(r"/admin/imports/importjob/\d+/change/$"))
    assert "succeeded" in page.locator(".field-status .readonly").inner_text().lower()
    messages = page.locator(".messagelist").inner_text()
    assert "succeeded: created 2, updated 0, unchanged 0, deleted 0, rejected 1 rows" in messages
    assert "images: 1 ok, 1 failed" in messages
    assert "missing_title" in page.locator(".field-rejected_rows_table").inner_text()
    assert "http_error" in page.locator(".field-image_failures_table").inner_text()
    assert page.locator('meta[http-equiv="refresh"]').count() == 0  # finished: no reloads

    job = ImportJob.objects.get()
    assert (job.status, job.trigger, job.created_by.username) == ("succeeded", "admin", "ada")
    assert re.fullmatch(r"upload:imports/[0-9a-f]{32}/new_cars\.csv", job.source), job.source
    assert Car.objects.get(external_key="b1").renditions
