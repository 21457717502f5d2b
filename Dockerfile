# syntax=docker/dockerfile:1
# pitcrew's image: the image deploy/deployment.yaml runs.
#   docker build -t ghcr.io/your-org/pitcrew:0.1.0 .
#
# Base image pinning. The default below is a tag, so the build works as is; for reproducible, reviewable
# builds pin it by digest (a tag moves, a digest does not):
#   docker buildx imagetools inspect python:3.11-slim-bookworm      # copy the "Digest: sha256:..." line
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> -t ... .
# Both stages must use the same base: the virtualenv links to the base's /usr/local/bin/python3.11.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/pitcrew
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
# A regular (non-editable) install: the final stage gets the venv only, not the sources. pip compiles the
# bytecode now, because the running container's root filesystem is read-only.
RUN /opt/pitcrew/bin/pip install . \
 && /opt/pitcrew/bin/pitcrew --help >/dev/null

FROM ${PYTHON_IMAGE}
# A fixed non-root uid/gid (deployment.yaml's runAsUser/runAsGroup/fsGroup). The passwd entry exists
# because some libraries look the current user up by uid.
RUN groupadd --system --gid 10001 pitcrew \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/pitcrew --no-create-home \
      --shell /usr/sbin/nologin pitcrew \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/pitcrew
COPY --from=build /opt/pitcrew /opt/pitcrew
# Read-only root filesystem: no bytecode writes; HOME and temp files on the /tmp emptyDir; the store
# on the volume mounted at /var/lib/pitcrew.
ENV PATH=/opt/pitcrew/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
WORKDIR /var/lib/pitcrew
EXPOSE 8080
ENTRYPOINT ["pitcrew"]
CMD ["serve", "--config", "/etc/pitcrew/config/config.yaml"]
