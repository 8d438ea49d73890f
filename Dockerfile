# syntax=docker/dockerfile:1
#
# One image for every stallwatch command: ingest, simulate, broker-auth (and
# later the API and dashboard). Used by docker-compose.yml.
#
# NOTE: Docker is not available on the machine stallwatch is developed on, so
# this file has not been built there; see docs/deployment.md for what is and is
# not verified.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/stallwatch
ENV PATH=/opt/stallwatch/bin:$PATH
WORKDIR /src
# .dockerignore keeps the virtualenv, caches, tests and local data out.
COPY . .
RUN pip install .

FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/stallwatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/stallwatch /opt/stallwatch
# A fixed uid/gid: docker-compose.yml hands the credential files to 10001.
RUN groupadd --system --gid 10001 stallwatch \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/stallwatch --shell /usr/sbin/nologin stallwatch \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/stallwatch
WORKDIR /var/lib/stallwatch
USER 10001:10001
CMD ["stallwatch", "--help"]
