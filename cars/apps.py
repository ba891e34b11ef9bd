from django.apps import AppConfig


class CarsConfig(AppConfig):
    name = "cars"
    verbose_name = "Catalogue"
