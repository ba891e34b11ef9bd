#!/usr/bin/env bash
# Stop the node that start.sh started (pid file in $OPENSEARCH_HOME, default
# services/opensearch/var). SIGTERM closes the node cleanly; SIGKILL after 30 s.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODE_HOME="${OPENSEARCH_HOME:-$HERE/var}"
PID_FILE="$NODE_HOME/node.pid"
MAIN=imagebackend.search.SearchNode

PID="$(cat "$PID_FILE" 2>/dev/null || true)"
if [ -z "$PID" ] || ! kill -0 "$PID" 2>/dev/null; then
  rm -f "$PID_FILE"
  echo "search: not running (no live pid in $PID_FILE)"
  exit 0
fi
if ! tr '\0' ' ' <"/proc/$PID/cmdline" 2>/dev/null | grep -q "$MAIN"; then
  rm -f "$PID_FILE"
  echo "search: pid $PID is not our node (stale $PID_FILE removed)"
  exit 0
fi
kill -TERM "$PID"
for _ in $(seq 1 60); do
  kill -0 "$PID" 2>/dev/null || { rm -f "$PID_FILE"; echo "search: stopped (pid $PID)"; exit 0; }
  sleep 0.5
done
kill -KILL "$PID" 2>/dev/null || true
rm -f "$PID_FILE"
echo "search: killed (pid $PID did not stop within 30s)"
