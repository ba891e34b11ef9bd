#!/usr/bin/env bash
# Start the local OpenSearch 2.19 node for tests and CI on 127.0.0.1 (idempotent).
#
#   services/opensearch/start.sh      # from any directory; prints one line
#
# If something already answers on 127.0.0.1:$OPENSEARCH_PORT it says so and exits 0.
# Otherwise it builds the node (Maven, cached in ~/.m2) when target/ is missing or older
# than pom.xml/src, starts the JVM detached (it outlives this shell and a `make` that
# ran it), and waits until the cluster is at least yellow.
#
# Environment:
#   OPENSEARCH_PORT           HTTP port (default 9200); transport takes one of 9300-9399
#   OPENSEARCH_HOME           data, logs, pid file (default services/opensearch/var)
#   OPENSEARCH_JAVA_OPTS      heap/GC/JIT options, replacing the default
#                             "-Xms1g -Xmx1g -XX:+UseG1GC -XX:G1ReservePercent=25
#                             -XX:InitiatingHeapOccupancyPercent=30"
#   OPENSEARCH_START_TIMEOUT  seconds to wait for the node (default 120)
#   JAVA_HOME                 JDK for Maven and the node (default: java on PATH, 17+)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${OPENSEARCH_PORT:-9200}"
NODE_HOME="${OPENSEARCH_HOME:-$HERE/var}"
TIMEOUT="${OPENSEARCH_START_TIMEOUT:-120}"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
JAR="$HERE/target/image-backend-opensearch.jar"
STAMP="$HERE/target/.built"
PID_FILE="$NODE_HOME/node.pid"
LOG="$NODE_HOME/node.log"
MAIN=imagebackend.search.SearchNode
URL="http://127.0.0.1:$PORT"

health() { curl -fsS -m "${2:-3}" "$URL/_cluster/health${1:-}" >/dev/null 2>&1; }
version() {
  curl -fsS -m 3 "$URL/" 2>/dev/null | tr -d ' \n' | sed -n 's/.*"number":"\([^"]*\)".*/\1/p'
}
ours() {  # ours PID: is PID a running node started from this script?
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "$MAIN"
}
already() { echo "search: OpenSearch $(version || true) on 127.0.0.1:$PORT (already running)"; exit 0; }

health && already

mkdir -p "$NODE_HOME"
# one start at a time (two `make` targets, a developer and a test runner...)
exec 9>"$NODE_HOME/start.lock"
flock -w $((TIMEOUT + 300)) 9 || { echo "search: another start.sh holds $NODE_HOME/start.lock" >&2; exit 1; }
health && already

T0=$SECONDS
PID=""
[ -f "$PID_FILE" ] && PID="$(cat "$PID_FILE" 2>/dev/null || true)"
if ours "$PID"; then
  : # a node of ours is still starting (its start.sh was interrupted): wait for it below
else
  rm -f "$PID_FILE"
  built=""
  if [ ! -f "$STAMP" ] || [ ! -f "$JAR" ] || [ -n "$(find "$HERE/pom.xml" "$HERE/src" -newer "$STAMP" -print -quit)" ]; then
    command -v mvn >/dev/null || { echo "search: mvn not found (apt-get install maven)" >&2; exit 1; }
    rm -rf "$HERE/target/lib" "$STAMP"
    if ! mvn -B -q -f "$HERE/pom.xml" package -DskipTests >"$NODE_HOME/build.log" 2>&1; then
      echo "search: Maven build failed; last lines of $NODE_HOME/build.log:" >&2
      tail -n 40 "$NODE_HOME/build.log" >&2
      exit 1
    fi
    touch "$STAMP"
    built=", build ${SECONDS}s"
  fi

  [ -f "$LOG" ] && mv -f "$LOG" "$LOG.1"
  # Defaults (OPENSEARCH_JAVA_OPTS replaces them): 1 GB of heap holds the 1M-car bench
  # index, with the distribution's G1 settings, which keep the heap under the real-memory
  # circuit breaker (SerialGC let garbage fill a 1 GB heap until bulk requests were
  # refused, 429); the full JIT: C1 only (TieredStopAtLevel=1) started in 3 s instead
  # of 5, but indexed 1M cars in 213 s against 85 s (services/opensearch/README.md). The rest mirrors the distribution's config/jvm.options (Netty
  # without Unsafe, no log4j shutdown hook so that the node can log its own shutdown,
  # locale data as 2.x expects).
  # shellcheck disable=SC2086
  (cd "$NODE_HOME" && exec setsid nohup "$JAVA" \
      ${OPENSEARCH_JAVA_OPTS:--Xms1g -Xmx1g -XX:+UseG1GC -XX:G1ReservePercent=25 -XX:InitiatingHeapOccupancyPercent=30} -Xss1m \
      -XX:-OmitStackTraceInFastThrow -Dfile.encoding=UTF-8 -Djava.awt.headless=true \
      -Djna.nosys=true -Djava.locale.providers=SPI,COMPAT \
      -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true \
      -Dio.netty.recycler.maxCapacityPerThread=0 \
      -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true \
      -Dsearch.home="$NODE_HOME" -Dsearch.http.port="$PORT" -Dsearch.pidfile="$PID_FILE" \
      -cp "$JAR:$HERE/target/lib/*" "$MAIN" \
      </dev/null >>"$LOG" 2>&1 9>&-) &
  PID=$!
  echo "$PID" >"$PID_FILE"  # the JVM writes the same pid itself; this covers its first moments
fi

while :; do
  if grep -q '^SEARCH_NODE_READY' "$LOG" 2>/dev/null && health '?wait_for_status=yellow&timeout=2s' 5; then
    echo "search: OpenSearch $(version) on 127.0.0.1:$PORT (started in $((SECONDS - T0))s${built:-})"
    exit 0
  fi
  if ! kill -0 "$PID" 2>/dev/null; then
    rm -f "$PID_FILE"
    echo "search: the OpenSearch JVM exited during startup; last lines of $LOG:" >&2
    tail -n 40 "$LOG" >&2
    grep -m1 '^SEARCH_NODE_FAILED' "$LOG" | sed 's/^SEARCH_NODE_FAILED/search: failed:/' >&2 || true
    exit 1
  fi
  if [ $((SECONDS - T0)) -ge "$TIMEOUT" ]; then
    echo "search: no healthy node on 127.0.0.1:$PORT after ${TIMEOUT}s (pid $PID left running; services/opensearch/stop.sh stops it); last lines of $LOG:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
  sleep 0.5
done
