from django.urls import path

from . import views

urlpatterns = [
    path("cars/", views.cars),
    path("cars-cached/", views.cars_cached),
]
