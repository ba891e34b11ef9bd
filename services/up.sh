#!/usr/bin/env bash
# `make services`: install (Debian packages) and start, on 127.0.0.1, the servers the
# integration tests use, as they expect them:
#   PostgreSQL 5432  postgres://postgres@127.0.0.1:5432/... with no password (trust)
#   Redis      6379  no persistence
#   RabbitMQ   5672  guest/guest (the default, which RabbitMQ allows from loopback)
#   search     9200  OpenSearch, started by services/opensearch/start.sh when present
# plus Chromium + chromedriver (browser tests) and wrk (load test, bench).
#
# Idempotent: what is installed is not installed again, what answers is not restarted, so
# a second run changes nothing and takes seconds. There is no systemd: each server is
# started directly, and package scripts are kept from starting (or failing to start) any.
# SERVICES="postgres redis" limits the run to some of them. Prints one line per service.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SERVICES=${SERVICES:-"packages postgres redis rabbitmq search"}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq 1 "$seconds"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "services: $what did not answer within ${seconds}s" >&2
  return 1
}

packages() {
  local wanted=(postgresql redis-server rabbitmq-server chromium chromium-driver wrk maven)
  local missing=()
  for package in "${wanted[@]}"; do
    dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'ok installed' \
      || missing+=("$package")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "packages: ${wanted[*]} (installed)"
    return
  fi
  # A policy-rc.d that says 101 keeps the packages' scripts from starting their servers
  # (no systemd here); we start them below with our own settings.
  local policy=/usr/sbin/policy-rc.d added_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    added_policy=1
  fi
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  [ -z "$added_policy" ] || as_root rm -f "$policy"
  echo "packages: installed ${missing[*]}"
}

postgres_ready() { pg_isready -h 127.0.0.1 -p 5432 -q; }

postgres() {
  if postgres_ready; then
    echo "postgres: $(postgres_version) on 127.0.0.1:5432 (already running)"
    return
  fi
  local version
  version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
  pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$version main" \
    || as_root pg_createcluster "$version" main >/dev/null
  local conf=/etc/postgresql/$version/main
  # Tests only: trust on loopback (no password), and no durability they do not need.
  if ! grep -q '^# image_backend' "$conf/pg_hba.conf"; then
    as_root sed -i '1i # image_backend: the tests connect as postgres with no password\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$conf/pg_hba.conf"
  fi
  printf '%s\n' "listen_addresses = '127.0.0.1'" "port = 5432" "max_connections = 200" \
    "fsync = off" "synchronous_commit = off" "full_page_writes = off" \
    | as_root tee "$conf/conf.d/image_backend.conf" >/dev/null
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for 30 PostgreSQL postgres_ready
  echo "postgres: $(postgres_version) on 127.0.0.1:5432 (started)"
}

postgres_version() {
  psql -h 127.0.0.1 -U postgres -XAtc 'SHOW server_version' postgres 2>/dev/null \
    | cut -d' ' -f1 | sed 's/^/PostgreSQL /'
}

redis_ready() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }

redis() {
  if redis_ready; then
    echo "redis: Redis $(redis_version) on 127.0.0.1:6379 (already running)"
    return
  fi
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/image_backend.log
  wait_for 30 Redis redis_ready
  echo "redis: Redis $(redis_version) on 127.0.0.1:6379 (started)"
}

redis_version() { redis-cli -h 127.0.0.1 info server | sed -n 's/^redis_version:\(.*\)\r$/\1/p'; }

rabbitmq_ready() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

rabbitmq() {
  if rabbitmq_ready; then
    echo "rabbitmq: RabbitMQ on 127.0.0.1:5672 (already running)"
    return
  fi
  # Loopback only; guest/guest is RabbitMQ's default user, allowed from loopback.
  as_root mkdir -p /etc/rabbitmq
  if [ ! -f /etc/rabbitmq/rabbitmq-env.conf ] || ! grep -q image_backend /etc/rabbitmq/rabbitmq-env.conf; then
    printf '%s\n' "# image_backend: loopback only" "NODE_IP_ADDRESS=127.0.0.1" \
      "NODENAME=rabbit@localhost" | as_root tee -a /etc/rabbitmq/rabbitmq-env.conf >/dev/null
  fi
  as_root rabbitmq-server -detached
  # The node registers with epmd a moment after -detached returns; until then
  # await_startup fails at once, so wait for the port first.
  wait_for 120 RabbitMQ rabbitmq_ready
  as_root rabbitmqctl -q await_startup --timeout 120 >/dev/null
  echo "rabbitmq: RabbitMQ $(as_root rabbitmqctl -q version 2>/dev/null) on 127.0.0.1:5672 (started)"
}

search() {
  # The OpenSearch node (SPEC §6a) from Maven artifacts: its own script, when it exists.
  if [ -x "$here/opensearch/start.sh" ]; then
    "$here/opensearch/start.sh"
  else
    echo "search: no node in this checkout (services/opensearch/start.sh)"
  fi
}

for service in $SERVICES; do
  "$service"
done
