# syntax=docker/dockerfile:1
# Stellara's container image: docs/operations/container.md.
#   docker build -t stellara .
#   docker run --rm -p 4000:4000 -v ./stellara.yaml:/etc/stellara/stellara.yaml:ro stellara
# scripts/build-image-offline builds the same image without Docker: it reads the ARG, ENV,
# USER, WORKDIR, VOLUME, EXPOSE, STOPSIGNAL, HEALTHCHECK, ENTRYPOINT and CMD lines of the
# last stage below (tests/deploy/test_image.py checks that both describe the same image).
# The base is the Python minor Debian bookworm ships (3.11), so the offline build, on
# Debian's own python3, runs what this one runs.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/runtime.lock ./requirements/
COPY src ./src
# The wheel first, then a venv holding it and the dependencies the runtime lock pins, each
# checked against its hashes (the versions CI tested; --no-deps: the lock is the whole set).
# The runtime stage copies only the venv, so no build tool, cache or source tree reaches it.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/stellara \
 && /opt/stellara/bin/pip install --no-cache-dir --no-deps --require-hashes \
      -r requirements/runtime.lock \
 && /opt/stellara/bin/pip install --no-cache-dir --no-deps /wheels/stellara-*.whl \
 && /opt/stellara/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
ARG STELLARA_UID=10001
ARG STELLARA_USER=stellara
# No shell and no password: the user exists to own the data directory and run the gateway.
RUN groupadd --gid ${STELLARA_UID} ${STELLARA_USER} \
 && useradd --uid ${STELLARA_UID} --gid ${STELLARA_UID} \
      --home-dir /var/lib/stellara --no-create-home --shell /usr/sbin/nologin ${STELLARA_USER} \
 && install -d -o ${STELLARA_UID} -g ${STELLARA_UID} -m 0750 /var/lib/stellara \
 && install -d -m 0755 /etc/stellara
COPY --from=build /opt/stellara /opt/stellara

# What must stay writable with a read-only root filesystem: /var/lib/stellara (the working
# directory, so the default usage store sqlite:///stellara.db lands there) and /tmp (TMPDIR:
# the metrics directory of --workers N). Bytecode is compiled at install, never written later.
ENV PATH=/opt/stellara/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp
WORKDIR /var/lib/stellara
VOLUME ["/var/lib/stellara"]
USER ${STELLARA_UID}:${STELLARA_UID}
EXPOSE 4000
# stellara installs its own SIGTERM handler, so it drains as PID 1 without an init.
STOPSIGNAL SIGTERM
# Slim images have no curl: the venv's Python asks /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:4000/healthz', timeout=4)"]
ENTRYPOINT ["stellara"]
CMD ["serve", "--config", "/etc/stellara/stellara.yaml", "--host", "0.0.0.0", "--port", "4000"]
