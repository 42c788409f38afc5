# aipk production image: `manage.py serve` (uvicorn, WEB_CONCURRENCY workers) by default;
# the same image runs the Celery worker, beat and the migrate job with another command
# (compose.yaml, deploy/kubernetes/, docs/DEPLOY.md). No secret is baked in: DJANGO_SECRET_KEY,
# FERNET_KEYS, DATABASE_URL and REDIS_URL come from the environment at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=aipk_site.settings \
    DEBUG=false \
    HOST=0.0.0.0 \
    PORT=8000

WORKDIR /app

# Runtime requirements only (requirements-dev.txt stays out): every wheel they need is
# prebuilt for linux/amd64 and arm64, so no compiler in the image.
COPY requirements.txt .
RUN pip install -r requirements.txt

RUN groupadd --system --gid 10001 aipk \
    && useradd --system --uid 10001 --gid aipk --home-dir /app --shell /usr/sbin/nologin aipk \
    && install -d -o aipk -g aipk /var/lib/aipk/usage-spool

# the usage spool (rows the database could not take) outlives the container on a volume
ENV USAGE_SPOOL_DIR=/var/lib/aipk/usage-spool

COPY --chown=aipk:aipk . .

# collectstatic needs settings but no secrets: placeholders that exist only in this layer's
# build step, never in the image's environment.
RUN DJANGO_SECRET_KEY=collectstatic-only FERNET_KEYS=collectstatic-only \
    python manage.py collectstatic --noinput -v 0 \
    && chown -R aipk:aipk /app/staticfiles

USER 10001:10001
EXPOSE 8000

# Alive = the server answers GET /health with any status (scripts/alive.py says why a 503
# there, a degraded provider, must not restart it); routing decisions use /ready.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "scripts/alive.py"]

# exec form: SIGTERM reaches the server itself, which drains (docs/DEPLOY.md, "Graceful shutdown")
STOPSIGNAL SIGTERM
CMD ["python", "manage.py", "serve"]
