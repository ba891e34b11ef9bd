"""gunicorn reads this file when started from the project folder (`gunicorn config.wsgi`).

It only adds the warm-up hook; every other option is gunicorn's default or the command
line's. The container image uses deploy/docker/gunicorn.conf.py, which has it too.
"""


def post_worker_init(worker) -> None:
    """Warm the worker up before it accepts connections (core/warmup.py)."""
    from core.warmup import post_worker_init as warm_up

    warm_up(worker)
