# syntax=docker/dockerfile:1
# The labeling portal (labeling/portal) as deployed on ECS Fargate by components/portal.py, which
# builds and pushes this image with awsx.ecr.Image at `pulumi up` (build context: the repo root,
# filtered by .dockerignore). Run `make viewer` first: the portal serves the same viewer bundle
# (build/viewer) as the Ground Truth template, so both answer with the same SRI hash.
#
# Only what the portal imports is installed (no torch/MONAI: training runs elsewhere), at the
# versions pinned in constraints.txt — the one pin list of the project.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY constraints.txt /tmp/constraints.txt
RUN pip install -c /tmp/constraints.txt \
        fastapi "uvicorn[standard]" sqlalchemy alembic "psycopg[binary]" argon2-cffi "pyjwt[crypto]" \
        jinja2 python-multipart pydicom numpy requests rich pyyaml boto3 highdicom \
    && rm /tmp/constraints.txt

COPY labeling/ /app/labeling/
COPY schemas/ /app/schemas/
COPY build/viewer/ /app/build/viewer/

# A fixed non-root user (the ECS task definition names the same uid:gid); the code stays root-owned
# and read-only to it. The task's root filesystem is read-only and /tmp is a task bind mount: ECS
# gives a bind mount root:0755 unless the image declares the path as a VOLUME, whose ownership and
# mode (here 1777, the cache directory the portal's user's) the mount then takes over.
RUN groupadd --system --gid 10001 portal \
    && useradd --system --uid 10001 --gid portal --no-create-home --home-dir /tmp --shell /usr/sbin/nologin portal \
    && chmod 1777 /tmp && install -d -o 10001 -g 10001 -m 0700 /tmp/portal-cache
VOLUME ["/tmp"]
USER 10001:10001
ENV HOME=/tmp \
    PORTAL_HOST=0.0.0.0 \
    PORTAL_PORT=8000
EXPOSE 8000

# Migrations run on every start (idempotent; PORTAL_DB_CREATE=true creates the database once).
CMD ["sh", "-c", "python -m labeling portal migrate && exec python -m labeling portal serve"]
