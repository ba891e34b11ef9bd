from django.urls import path

from .caching import catalog_cache
from .views import CarDetailView, CarListView, CarPlatformDetailView, CarPlatformListView

# ETags, Cache-Control and the response cache around each view, as `cache_page` would.
urlpatterns = [
    path("cars/", catalog_cache(CarListView.as_view()), name="car-list"),
    path("cars/<int:pk>/", catalog_cache(CarDetailView.as_view()), name="car-detail"),
    path(
        "cars/<str:platform>/",
        catalog_cache(CarPlatformListView.as_view()),
        name="car-platform-list",
    ),
    path(
        "cars/<str:platform>/<int:pk>/",
        catalog_cache(CarPlatformDetailView.as_view()),
        name="car-platform-detail",
    ),
]
