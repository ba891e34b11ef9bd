"""RenditionUrls builds the same URLs the storage would, asking it once per request."""

import pytest
from django.core.files.storage import default_storage
from django.test import RequestFactory

from cars.pictures.urls import RenditionUrls

NAMES = [
    "CACHE/images/images/image_1/aurora-gt-3afeb1a32b/dae44e7bf18f588dd96184f361a2d6a0.jpg",
    "images/image_12/car_photo-0123456789.png",
    "images/image_3/voiture é-0123456789.jpg",  # not plain: spelled by the storage
    "images/image_4/a b+c-0123456789.jpg",
]


@pytest.mark.parametrize("media_url", ["/media/", "https://cdn.example.test/m/"])
def test_urls_match_the_storage_for_every_name(settings, media_url):
    settings.MEDIA_URL = media_url
    settings.ALLOWED_HOSTS = ["api.example.test"]
    request = RequestFactory().get("/api/cars/", HTTP_HOST="api.example.test")
    urls = RenditionUrls(request.build_absolute_uri)
    relative = RenditionUrls()
    for name in NAMES:
        expected = request.build_absolute_uri(default_storage.url(name))
        assert urls.url(name) == expected
        assert relative.url(name) == default_storage.url(name)
