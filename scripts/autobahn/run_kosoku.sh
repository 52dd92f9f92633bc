#!/usr/bin/env bash
# The whole Autobahn WebSocket suite (every group, 9.* and 12.*/13.* included), run natively by
# kosoku against refserver's ASGI and RSGI echo apps on both paths, one server at a time, on
# 127.0.0.1 only. Reports go to ${OUT:-autobahn-reports}/kosoku-<interface>-<impl>/.
#
#   scripts/autobahn/run_kosoku.sh                 # all four: asgi/rsgi x pure/fast
#   scripts/autobahn/run_kosoku.sh asgi:pure       # one of them
#   CASES='12.*' scripts/autobahn/run_kosoku.sh    # a subset
#
# kosoku caps every case at 20 s; the 12.x cases with 128 KiB messages cut into 256-byte frames
# are the slowest (~15 s on one 2-core machine), so cases run one at a time (PARALLELISM=1).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python}"
OUT="${OUT:-autobahn-reports}"
PARALLELISM="${PARALLELISM:-1}"
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(asgi:pure asgi:fast rsgi:pure rsgi:fast)
"$PYTHON" -c "import kosoku" 2>/dev/null || "$PYTHON" -m pip install -q kosoku

status=0
for target in "${TARGETS[@]}"; do
  interface="${target%%:*}"
  impl="${target##*:}"
  loop=asyncio; [ "$impl" = fast ] && loop=uvloop
  port=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$PYTHON" -m refserver "scripts.autobahn.echo_apps:${interface}_echo" --interface "$interface" \
    --impl "$impl" --loop "$loop" --host 127.0.0.1 --port "$port" --no-access-log \
    --log-level warning &
  server=$!
  for _ in $(seq 100); do
    "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" \
      2>/dev/null && break
    sleep 0.1
  done
  report="$OUT/kosoku-$interface-$impl"
  args=()
  if [ -n "${CASES:-}" ]; then
    for c in $CASES; do args+=(-i "$c"); done
  fi
  echo "== $interface / $impl (port $port) -> $report"
  started=$(date +%s)
  mkdir -p "$OUT"
  "$PYTHON" -c 'import sys; from kosoku._cli import main; sys.argv[0] = "kosoku"; sys.exit(main())' \
    "127.0.0.1:$port" -p "$PARALLELISM" -o "$report" ${args[@]+"${args[@]}"} > "$report.log" 2>&1 || true
  echo "   $(( $(date +%s) - started )) s"
  kill -TERM "$server"; wait "$server" || true
  "$PYTHON" scripts/autobahn/summarize.py "$report" || status=1
done
exit $status
