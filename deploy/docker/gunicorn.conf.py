"""Gunicorn settings of the image (`gunicorn --config deploy/docker/gunicorn.conf.py config.wsgi`).

Sized from the environment, never from the machine's CPU count (a container sees the
node's cores, not its own CPU limit):

- `GUNICORN_WORKERS` (default 2): worker processes per container.
- `GUNICORN_THREADS` (default 4): threads per worker (gthread worker class when > 1).
- `CARS_METRICS_PORT` (default 9100, as in the production settings): a second port,
  where alone /metrics answers (ops/metrics.py); no Service or proxy routes to it.
- any other gunicorn option: `GUNICORN_CMD_ARGS`, read by gunicorn itself, e.g.
  `GUNICORN_CMD_ARGS="--timeout 60 --access-logfile -"`.

`WEB_CONCURRENCY` (gunicorn's own fallback) is ignored on purpose: `workers` is set here.
Every file gunicorn writes goes under /tmp, so the root filesystem can be read-only.
"""

import os
import shutil
from pathlib import Path


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


metrics_port = _int("CARS_METRICS_PORT", 9100)
bind = ["0.0.0.0:8000", *([f"0.0.0.0:{metrics_port}"] if metrics_port else [])]
workers = _int("GUNICORN_WORKERS", 2)
threads = _int("GUNICORN_THREADS", 4)
worker_class = "gthread" if threads > 1 else "sync"
timeout = 60  # a request is never an import: imports run in Celery workers
graceful_timeout = 30  # Kubernetes allows 45 s: preStop sleep 5 + this + a margin
keepalive = 5
max_requests = 2000  # recycle workers now and then (slow leaks in long-lived processes)
max_requests_jitter = 200
worker_tmp_dir = "/tmp"
control_socket = "/tmp/gunicorn.ctl"  # the control interface; its default is under $HOME
errorlog = "-"
accesslog = None  # requests are logged by the application (JSON) and by the proxy
# The proxy in front sets X-Forwarded-Proto; Django reads it (SECURE_PROXY_SSL_HEADER).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
proc_name = "image-backend-web"


def on_starting(server) -> None:
    """Multi-process Prometheus metrics, when the application uses them: start clean."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    """Forget a dead worker's live gauges (prometheus_client multi-process mode)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:
        return
    multiprocess.mark_process_dead(worker.pid)
