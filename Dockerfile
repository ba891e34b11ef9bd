# syntax=docker/dockerfile:1
# One image for every process: web (gunicorn, the default command), Celery worker and
# beat, and the one-shot migrate job; docker-compose.yml and deploy/k8s/ pick the command.
#
#   docker build -t image-backend .
#
# No secret is baked in: every deployment value comes from the environment at run time
# (see .env.example and docs/deploying.md). `.dockerignore` keeps .env, .git, the
# virtualenvs, local media and the database out of the build context.

FROM python:3.11-slim-bookworm AS base
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# --- builder: the virtualenv with the pinned dependencies (wheels only, no compiler) ------
FROM base AS builder
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

# --- runtime: the virtualenv, the code, the collected static files, a non-root user -------
FROM base AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# Owned by root and read-only for the app user: the process cannot change its own code.
COPY . /app

# Static files are served by whitenoise from the image. collectstatic needs the production
# settings to import; the values below exist only for this command (never in the image's
# environment) and are no secret: no request is ever served with them.
RUN SECRET_KEY=collectstatic-build-only ALLOWED_HOSTS=localhost \
        DATABASE_URL=sqlite:////tmp/collectstatic.sqlite3 \
        python manage.py collectstatic --noinput --verbosity 0 \
    && rm -f /tmp/collectstatic.sqlite3 \
    && python -m compileall -q /app

USER 10001:10001
EXPOSE 8000

# /healthz answers while the process serves; orchestrators use /readyz for readiness.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "deploy/docker/healthcheck.py", "/healthz"]

# Workers and threads from GUNICORN_WORKERS / GUNICORN_THREADS (deploy/docker/gunicorn.conf.py).
CMD ["gunicorn", "--config", "deploy/docker/gunicorn.conf.py", "config.wsgi"]
