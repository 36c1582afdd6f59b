# Production image: gunicorn serving Django; the same image runs migrate, worker and beat
# (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_DEBUG=0 \
    HOLDFAST_STORAGE_ROOT=/data/storage \
    HOLDFAST_RESTORE_ROOTS=/data/restores \
    HOLDFAST_KEY_FILE=/keys/master.key

RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin holdfast

WORKDIR /app

# pg_dump and pg_restore, for PostgreSQL items (docs/workloads.md): at least as new as the
# servers protected; a newer server needs the PGDG repository's postgresql-client-<major>.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, from pyproject.toml alone, so code changes reuse this layer.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
# /data and /keys are where docker-compose mounts the shared named volumes; a fresh volume
# copies this ownership (and /keys its mode 0700), so the non-root user can write vault
# storage, restores and the master key there.
RUN pip install --no-deps . \
    && SECRET_KEY=collectstatic-only ALLOWED_HOSTS=localhost \
       python manage.py collectstatic --noinput \
    && mkdir -p /data/storage /data/restores /keys \
    && chown -R holdfast:holdfast /data /keys \
    && chmod 0700 /keys

USER holdfast
EXPOSE 8000

CMD ["gunicorn", "portal.wsgi:application", "-b", "0.0.0.0:8000", "--workers", "3"]
