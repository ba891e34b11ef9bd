"""`python manage.py render_images [--all]`: make renditions again from stored originals.

After a platform is added to CARS_PLATFORMS, existing pictures lack its rendition (the
API reports it as null); this fills the gap. Runs inline, or as Celery tasks when a
broker is configured.
"""

from django.core.management.base import BaseCommand, CommandParser

from cars.models import Picture
from cars.pictures.platforms import get_platforms
from cars.pictures.store import rerender_picture
from imports.dispatch import RENDER_PICTURE, run_or_send_each


class Command(BaseCommand):
    help = "Render every platform's image of pictures that miss one (or of all with --all)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="re-render every picture")

    def handle(self, *args, **options) -> None:
        wanted = set(get_platforms())
        todo = [
            pk
            for pk, renditions in Picture.objects.values_list("pk", "renditions")
            if options["all"] or not wanted <= set(renditions or {})
        ]
        done = run_or_send_each(RENDER_PICTURE, rerender_picture, [(pk,) for pk in todo])
        if done is None:
            self.stdout.write(f"queued {len(todo)} pictures")
        else:
            self.stdout.write(f"rendered {sum(done)} pictures")
