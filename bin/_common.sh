# Shared by bin/run and bin/test: the virtualenv and the local services. Sourced, not executed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

ensure_venv() {
  local stamp="$VENV/.installed" python="${PYTHON:-python3}"
  if [ ! -x "$PY" ]; then
    say "creating $VENV"
    "$python" -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    say "installing the project and its dev/test/bench/deploy extras into .venv"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -e "$ROOT[dev,bench,deploy]"
    touch "$stamp"
  fi
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2 i
  for i in $(seq 1 120); do
    listening "$port" && return 0
    sleep 0.5
  done
  echo "error: $name did not start listening on 127.0.0.1:$port" >&2
  return 1
}

ensure_services() {
  if ! listening 5432; then
    say "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    wait_port 5432 PostgreSQL
  fi
  if ! listening 6379; then
    say "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    wait_port 6379 Redis
  fi
  if ! listening 5672; then
    say "starting RabbitMQ"
    rabbitmq-server -detached
    wait_port 5672 RabbitMQ
  fi
  if ! listening 15672; then
    say "enabling the RabbitMQ management plugin"
    rabbitmq-plugins enable rabbitmq_management >/dev/null
    wait_port 15672 "RabbitMQ management"
  fi
}

ensure_database() {
  local name=$1
  if ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
    say "creating database $name"
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE \"$name\""
  fi
}

ensure_vhost() {  # a RabbitMQ vhost of its own (not the shared "/"), guest allowed everything in it
  local name=$1 api="http://127.0.0.1:15672/api" code
  local curl=(curl -fsS -u guest:guest --retry 10 --retry-delay 1 --retry-connrefused)
  code=$("${curl[@]}" -o /dev/null -w '%{http_code}' -X PUT "$api/vhosts/$name")
  if [ "$code" = 201 ]; then say "created RabbitMQ vhost $name"; fi
  "${curl[@]}" -o /dev/null -X PUT -H 'content-type: application/json' \
    -d '{"configure": ".*", "write": ".*", "read": ".*"}' "$api/permissions/$name/guest"
}

ensure_browser() {  # Debian's Chromium and ChromeDriver, for the dashboard's browser test
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    return 0
  fi
  say "installing Debian's chromium and chromium-driver (the dashboard's browser test)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -q chromium chromium-driver >/dev/null; }
}

ensure_prometheus() {  # Debian's prometheus (the server and promtool), for the rules and the e2e test
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    return 0
  fi
  say "installing Debian's prometheus (promtool and the server, for the alert rules' tests)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus \
    >/dev/null || { $sudo apt-get update -q >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
  # the package starts a system service on :9090 on some systems: the tests run their own
  $sudo systemctl disable --now prometheus >/dev/null 2>&1 || $sudo pkill -x prometheus || true
}
