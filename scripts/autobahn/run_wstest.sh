#!/usr/bin/env bash
# The whole Autobahn WebSocket suite with Autobahn's own client, wstest (autobahntestsuite, which
# runs on Python 2.7 only), against refserver's ASGI and RSGI echo apps on both paths, on
# 127.0.0.1 only. About a quarter of an hour per server; a script, not a CI step.
#
#   scripts/autobahn/run_wstest.sh                    # all four: asgi/rsgi x pure/fast
#   scripts/autobahn/run_wstest.sh rsgi:fast          # one of them
#   CASES='"1.*", "12.1.*"' scripts/autobahn/run_wstest.sh
#
# The Python 2.7 virtualenv is made once, from pyenv's 2.7 (PY27 to use another interpreter), in
# ${WSTEST_VENV:-.autobahn-py27}. Reports: ${OUT:-autobahn-reports}/wstest/ (index.json per agent).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python}"
OUT="${OUT:-autobahn-reports}"
VENV="${WSTEST_VENV:-.autobahn-py27}"
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(asgi:pure asgi:fast rsgi:pure rsgi:fast)

if [ ! -x "$VENV/bin/wstest" ]; then
  PY27="${PY27:-}"
  if [ -z "$PY27" ] && command -v pyenv >/dev/null; then
    PY27="$(pyenv root)/versions/$(pyenv versions --bare | grep -E '^2\.7' | tail -n 1)/bin/python"
  fi
  [ -x "$PY27" ] || { echo "Python 2.7 not found (set PY27)" >&2; exit 1; }
  "$PY27" -m pip install -q "virtualenv<20.22"
  "$PY27" -m virtualenv -q "$VENV"
  "$VENV/bin/pip" install -q autobahntestsuite
fi

mkdir -p "$OUT/wstest"
servers=()
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; wait || true; }
trap cleanup EXIT
for target in "${TARGETS[@]}"; do
  interface="${target%%:*}"
  impl="${target##*:}"
  loop=asyncio; [ "$impl" = fast ] && loop=uvloop
  port=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$PYTHON" -m refserver "scripts.autobahn.echo_apps:${interface}_echo" --interface "$interface" \
    --impl "$impl" --loop "$loop" --host 127.0.0.1 --port "$port" --no-access-log \
    --log-level warning &
  pids+=($!)
  for _ in $(seq 100); do
    "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" \
      2>/dev/null && break
    sleep 0.1
  done
  servers+=("{\"agent\": \"refserver-$interface-$impl\", \"url\": \"ws://127.0.0.1:$port\"}")
done

spec="$OUT/wstest/fuzzingclient.json"
joined=$(IFS=,; echo "${servers[*]}")
cat > "$spec" <<JSON
{
  "outdir": "$OUT/wstest",
  "servers": [$joined],
  "cases": [${CASES:-"\"*\""}],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
started=$(date +%s)
"$VENV/bin/wstest" -m fuzzingclient -s "$spec" > "$OUT/wstest/wstest.log" 2>&1
echo "wstest: $(( $(date +%s) - started )) s"
"$PYTHON" scripts/autobahn/summarize.py "$OUT/wstest"
