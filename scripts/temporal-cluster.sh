#!/usr/bin/env bash
# A production-shaped Temporal for flowthru on this machine: the Temporal server 1.29.1 (built from
# the Go module proxy, cached like the CLI) on PostgreSQL persistence and visibility, its services
# in one process or in four (frontend, history, matching, worker), with a chosen number of history
# shards. Never part of ./dev.sh test or demo: see "Scaling out" in the README.
#
#   ./dev.sh temporal-cluster setup [--shards N]   build the server and its SQL tool, create the schema (again: N changed)
#   ./dev.sh temporal-cluster start [--split]      start it (--split: one process per service) on 127.0.0.1:7433
#   ./dev.sh temporal-cluster stop
#   ./dev.sh temporal-cluster status
#
# Its databases are flowthru_temporal and flowthru_temporal_visibility on $TEMPORAL_PG (default
# postgres@127.0.0.1:5432); its state (config, logs, pids) lives in .flowthru/temporal-cluster/.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER_VERSION=v1.29.1
FLOWTHRU_CACHE=${FLOWTHRU_CACHE:-$HOME/.cache/flowthru}
BIN_DIR=$FLOWTHRU_CACHE/temporal-server-$SERVER_VERSION
TEMPORAL_CLI=${FLOWTHRU_TEMPORAL_BIN:-$FLOWTHRU_CACHE/temporal-v1.5.1/temporal}
PG_HOST=${TEMPORAL_PG_HOST:-127.0.0.1}
PG_PORT=${TEMPORAL_PG_PORT:-5432}
PG_USER=${TEMPORAL_PG_USER:-postgres}
DB=flowthru_temporal
VISIBILITY_DB=flowthru_temporal_visibility
STATE=.flowthru/temporal-cluster
FRONTEND_PORT=${TEMPORAL_CLUSTER_PORT:-7433}
ADDRESS=127.0.0.1:$FRONTEND_PORT

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'temporal-cluster: %s\n' "$*" >&2; exit 1; }

build() {
  [[ -x $BIN_DIR/temporal-server && -x $BIN_DIR/temporal-sql-tool && -d $BIN_DIR/schema ]] && return
  command -v go >/dev/null || die "Go is needed to build the Temporal server $SERVER_VERSION (e.g. apt-get install golang)."
  mkdir -p "$BIN_DIR"
  say "Building the Temporal server $SERVER_VERSION and its SQL tool with go install (minutes the first time)"
  local tmp
  tmp=$(mktemp -d)
  GOBIN=$tmp GOFLAGS=-mod=mod go install "go.temporal.io/server/cmd/server@$SERVER_VERSION" "go.temporal.io/server/cmd/tools/sql@$SERVER_VERSION" ||
    die "building the Temporal server failed (see the go output above)."
  mv "$tmp/server" "$BIN_DIR/temporal-server"
  mv "$tmp/sql" "$BIN_DIR/temporal-sql-tool"
  rmdir "$tmp"
  # The schema (and its versioned updates) ships in the module: keep a copy beside the binaries.
  local module
  module=$(GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' "go.temporal.io/server@$SERVER_VERSION" 2>/dev/null || true)
  [[ -n $module && -d $module/schema/postgresql/v12 ]] || module=$(go env GOMODCACHE)/go.temporal.io/server@$SERVER_VERSION
  [[ -d $module/schema/postgresql/v12 ]] || die "cannot find the server module's schema/postgresql/v12 in the Go module cache."
  rm -rf "$BIN_DIR/schema"
  cp -r "$module/schema/postgresql/v12" "$BIN_DIR/schema"
  chmod -R u+w "$BIN_DIR/schema"
}

sql_tool() {
  "$BIN_DIR/temporal-sql-tool" --plugin postgres12 --ep "$PG_HOST" -p "$PG_PORT" -u "$PG_USER" "$@"
}

setup() {
  local shards=4
  while [[ $# -gt 0 ]]; do
    case $1 in
      --shards) shards=$2; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  [[ $shards =~ ^[1-9][0-9]*$ ]] || die "--shards takes a positive number"
  build
  stop_all quiet
  say "Creating $DB and $VISIBILITY_DB on $PG_HOST:$PG_PORT ($shards history shards)"
  # The shard count is fixed when the schema is created: a new count means new databases.
  psql -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -c "drop database if exists $DB with (force)" -c "drop database if exists $VISIBILITY_DB with (force)"
  sql_tool --db "$DB" create-database
  sql_tool --db "$DB" setup-schema -v 0.0
  sql_tool --db "$DB" update-schema -d "$BIN_DIR/schema/temporal/versioned"
  sql_tool --db "$VISIBILITY_DB" create-database
  sql_tool --db "$VISIBILITY_DB" setup-schema -v 0.0
  sql_tool --db "$VISIBILITY_DB" update-schema -d "$BIN_DIR/schema/visibility/versioned"
  mkdir -p "$STATE/config/dynamicconfig"
  echo "$shards" >"$STATE/shards"
  say "Set up. Start it with: ./dev.sh temporal-cluster start [--split]"
}

write_config() {
  # PostgreSQL's default max_connections is 100, shared with flowthru's workers (20 each): each
  # process of the server keeps a pool, so four processes get a quarter each.
  local shards=$1 split=$2 base=$((FRONTEND_PORT - 7433)) conns=20 visibility_conns=4
  if $split; then conns=8 visibility_conns=2; fi
  cat >"$STATE/config/dynamicconfig/flowthru.yaml" <<'EOF'
# Dynamic configuration of flowthru's production-shaped Temporal (see the server's docs/dynamic config).
frontend.enableUpdateWorkflowExecution:
  - value: true
EOF
  cat >"$STATE/config/flowthru.yaml" <<EOF
# Written by scripts/temporal-cluster.sh: the server module's config/development-postgres12.yaml,
# on flowthru's own ports and databases.
log:
  stdout: true
  level: warn
persistence:
  defaultStore: postgres-default
  visibilityStore: postgres-visibility
  numHistoryShards: $shards
  datastores:
    postgres-default:
      sql:
        pluginName: postgres12
        databaseName: $DB
        connectAddr: "$PG_HOST:$PG_PORT"
        connectProtocol: tcp
        user: $PG_USER
        password: ""
        maxConns: $conns
        maxIdleConns: $conns
        maxConnLifetime: 1h
    postgres-visibility:
      sql:
        pluginName: postgres12
        databaseName: $VISIBILITY_DB
        connectAddr: "$PG_HOST:$PG_PORT"
        connectProtocol: tcp
        user: $PG_USER
        password: ""
        maxConns: $visibility_conns
        maxIdleConns: $visibility_conns
        maxConnLifetime: 1h
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
services:
  frontend:
    rpc: { grpcPort: $FRONTEND_PORT, membershipPort: $((6433 + base)), bindOnLocalHost: true, httpPort: $((7443 + base)) }
  matching:
    rpc: { grpcPort: $((7435 + base)), membershipPort: $((6435 + base)), bindOnLocalHost: true }
  history:
    rpc: { grpcPort: $((7434 + base)), membershipPort: $((6434 + base)), bindOnLocalHost: true }
  worker:
    rpc: { grpcPort: $((7439 + base)), membershipPort: $((6439 + base)), bindOnLocalHost: true }
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "$ADDRESS"
dcRedirectionPolicy:
  policy: noop
dynamicConfigClient:
  filepath: "$PWD/$STATE/config/dynamicconfig/flowthru.yaml"
  pollInterval: 10s
EOF
}

start() {
  local split=false
  while [[ $# -gt 0 ]]; do
    case $1 in
      --split) split=true; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  [[ -f $STATE/shards ]] || die "not set up: run ./dev.sh temporal-cluster setup first."
  build
  stop_all quiet
  write_config "$(cat "$STATE/shards")" "$split"
  mkdir -p "$STATE/logs"
  local services=(frontend history matching worker)
  if $split; then
    # History first: the frontend and matching find it through membership.
    for service in history matching frontend worker; do
      nohup "$BIN_DIR/temporal-server" --root "$STATE" --config config --env flowthru --allow-no-auth start --service "$service" \
        >"$STATE/logs/$service.log" 2>&1 &
      echo $! >"$STATE/$service.pid"
    done
  else
    nohup "$BIN_DIR/temporal-server" --root "$STATE" --config config --env flowthru --allow-no-auth start \
      $(printf -- '--service %s ' "${services[@]}") >"$STATE/logs/server.log" 2>&1 &
    echo $! >"$STATE/server.pid"
  fi
  say "Waiting for the frontend at $ADDRESS"
  for _ in $(seq 90); do
    if "$TEMPORAL_CLI" operator namespace describe --address "$ADDRESS" --namespace default >/dev/null 2>&1; then break; fi
    if "$TEMPORAL_CLI" operator cluster health --address "$ADDRESS" >/dev/null 2>&1; then
      "$TEMPORAL_CLI" operator namespace create --address "$ADDRESS" --namespace default --retention 72h >/dev/null 2>&1 || true
    fi
    sleep 1
  done
  "$TEMPORAL_CLI" operator namespace describe --address "$ADDRESS" --namespace default >/dev/null 2>&1 ||
    die "the server did not come up with a default namespace: see $STATE/logs/"
  say "Temporal $SERVER_VERSION on PostgreSQL ($(cat "$STATE/shards") history shards, $($split && echo 'four processes' || echo 'one process')) at $ADDRESS"
  echo "export TEMPORAL_ADDRESS=$ADDRESS"
}

stop_all() {
  local found=false
  for pidfile in "$STATE"/*.pid; do
    [[ -f $pidfile ]] || continue
    found=true
    kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  for pidfile in "$STATE"/*.pid; do
    [[ -f $pidfile ]] || continue
    local pid
    pid=$(cat "$pidfile")
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
  [[ ${1:-} == quiet ]] || { $found && say "Stopped" || say "Not running"; }
}

status() {
  local any=false
  for pidfile in "$STATE"/*.pid; do
    [[ -f $pidfile ]] || continue
    any=true
    local name
    name=$(basename "$pidfile" .pid)
    if kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: dead (see $STATE/logs/$name.log)"; fi
  done
  $any || echo "not running"
}

case "${1:-}" in
  setup) setup "${@:2}" ;;
  start) start "${@:2}" ;;
  stop) stop_all ;;
  status) status ;;
  *)
    echo "usage: ./dev.sh temporal-cluster setup [--shards N] | start [--split] | stop | status" >&2
    exit 2
    ;;
esac
