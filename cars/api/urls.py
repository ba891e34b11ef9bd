from django.urls import path

from .views import CarDetailView, CarListView, CarPlatformDetailView, CarPlatformListView

# ETags, Cache-Control and the response cache: cars.api.caching.CatalogCacheMiddleware.
urlpatterns = [
    path("cars/", CarListView.as_view(), name="car-list"),
    path("cars/<int:pk>/", CarDetailView.as_view(), name="car-detail"),
    path(
        "cars/<str:platform>/",
        CarPlatformListView.as_view(),
        name="car-platform-list",
    ),
    path(
        "cars/<str:platform>/<int:pk>/",
        CarPlatformDetailView.as_view(),
        name="car-platform-detail",
    ),
]
