# CyberVPN Task Worker: one image for every process (docs/deploy.md).
#   worker      worker-app worker [-Q queue ...]          (the default command; probes on METRICS_PORT 9090)
#   scheduler   python -m scheduler                       (probes on SCHEDULER_METRICS_PORT 9091)
#   API         worker-app serve --host 0.0.0.0           (probes on API_PORT 8000; needs API_TOKEN)
#   migrations  worker-app db upgrade                     (run before a new version's processes)
# Dependencies are installed at the exact versions of requirements.lock, then the project without
# dependencies: `pip check` fails the build if the lock misses one.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The runtime venv gets no pip, setuptools or wheel: the base image's pip installs into it.
RUN python -m venv --without-pip /opt/venv
COPY requirements.lock ./
# The project's own wheel is built with pinned build tools (pyproject's build-system), outside the venv.
RUN pip --python /opt/venv/bin/python install --no-deps --only-binary=:all: --requirement requirements.lock \
    && pip install --no-deps setuptools==84.2.1 wheel==0.48.0
COPY pyproject.toml README.md ./
COPY worker_app ./worker_app
COPY actors ./actors
COPY scheduler ./scheduler
COPY models ./models
COPY sandbox ./sandbox
COPY worker_app_entry.py ./
# The scheduler re-executes itself with -OO: both optimisation levels are compiled, as a pod's root
# filesystem is read-only.
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && pip --python /opt/venv/bin/python install --no-deps /tmp/wheels/*.whl \
    && pip --python /opt/venv/bin/python check \
    && /opt/venv/bin/python -m compileall -q -o 0 -o 2 /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
# tini is PID 1: it forwards SIGTERM to `worker-app worker` (Dramatiq's main process), which hands it
# on to its worker processes once. Not `tini -g`: a second SIGTERM makes a Dramatiq worker process
# exit at once instead of finishing its messages.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1* \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 worker \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin worker \
    && mkdir -p /var/lib/cybervpn/metrics /var/lib/cybervpn/exports \
    && chown -R 10001:10001 /var/lib/cybervpn
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json \
    METRICS_PORT=9090 \
    SCHEDULER_METRICS_PORT=9091 \
    API_PORT=8000 \
    METRICS_DIR=/var/lib/cybervpn/metrics \
    EXPORT_DIR=/var/lib/cybervpn/exports
WORKDIR /var/lib/cybervpn
USER 10001:10001
EXPOSE 9090 9091 8000
# Pod-local: the process's own /healthz on METRICS_PORT, no broker round trip. The scheduler and the
# API override the port (`worker-app health --port 9091` / `--port 8000`): docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["worker-app", "health"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["worker-app", "worker"]
