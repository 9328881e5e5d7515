# One image for all five Bondgenoot services. Pick the service with the command:
#   docker run bondgenoot:local python -m services.projects
# (docker-compose.yml does this per service). The health check lives in compose.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
COPY contracts ./contracts
RUN pip install .


FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 bondgenoot \
 && useradd --system --uid 10001 --gid bondgenoot --create-home --home-dir /home/bondgenoot \
        --shell /usr/sbin/nologin bondgenoot

COPY --from=build /opt/venv /opt/venv

# The code finds contracts/ beside the imported shared/ package (shared.settings
# REPO_ROOT = parent of shared/), so the source tree and contracts/ also sit in the
# working directory: `python -m services.<name>` puts the cwd first on sys.path and
# imports them from /app, next to /app/contracts. The venv holds the dependencies.
WORKDIR /app
COPY --from=build /src/shared ./shared
COPY --from=build /src/services ./services
COPY --from=build /src/contracts ./contracts

USER bondgenoot:bondgenoot

EXPOSE 8001 8002 8003 8004 8005

CMD ["python", "-m", "services.registry"]
