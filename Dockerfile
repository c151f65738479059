# Worker image: `worker-app worker` (= `dramatiq worker_app`, every log line JSON) by default; the same image runs `python -m scheduler`,
# `worker-app serve` (API and dashboard, port 8000; set API_TOKEN) and
# `worker-app ...` commands.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker_app ./worker_app
COPY actors ./actors
COPY scheduler ./scheduler
COPY models ./models
COPY sandbox ./sandbox
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 worker
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
USER worker
ENV LOG_FORMAT=json METRICS_PORT=9090 METRICS_DIR=/tmp/cybervpn-prometheus
EXPOSE 9090 9091 8000
# Liveness of the whole pipeline: a heartbeat through every queue (see docs/operations.md).
HEALTHCHECK --interval=60s --timeout=45s --start-period=30s CMD ["worker-app", "ping", "--timeout", "30"]
CMD ["worker-app", "worker", "--processes", "2", "--threads", "8"]
