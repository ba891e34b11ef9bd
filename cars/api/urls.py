from django.urls import path

from .caching import cached_by_catalog_version
from .views import CarDetailView, CarListView, CarPlatformDetailView, CarPlatformListView


def _view(view_class):
    return cached_by_catalog_version(view_class.as_view())


urlpatterns = [
    path("cars/", _view(CarListView), name="car-list"),
    path("cars/<int:pk>/", _view(CarDetailView), name="car-detail"),
    path("cars/<str:platform>/", _view(CarPlatformListView), name="car-platform-list"),
    path(
        "cars/<str:platform>/<int:pk>/",
        _view(CarPlatformDetailView),
        name="car-platform-detail",
    ),
]
