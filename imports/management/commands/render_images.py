"""`python manage.py render_images [--all]`: make renditions again from stored originals.

After a platform is added to CARS_PLATFORMS, existing cars lack its rendition (the API
reports it as null); this fills the gap. Runs inline, or as Celery tasks with REDIS_URL.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from cars.models import Car
from cars.platforms import get_platforms
from cars.renditions import rerender_car


class Command(BaseCommand):
    help = "Render every platform's image of cars that miss one (or of all cars with --all)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="re-render every car's images")

    def handle(self, *args, **options) -> None:
        wanted = set(get_platforms())
        todo = [
            pk
            for pk, renditions in Car.objects.exclude(image="").values_list("pk", "renditions")
            if options["all"] or not wanted <= set(renditions or {})
        ]
        if settings.REDIS_URL:
            from imports.tasks import render_car

            for pk in todo:
                transaction.on_commit(lambda pk=pk: render_car.delay(pk))
            self.stdout.write(f"queued {len(todo)} cars")
        else:
            done = sum(rerender_car(pk) for pk in todo)
            self.stdout.write(f"rendered {done} cars")
