#!/usr/bin/env bash
# flowthru's one entry point on a fresh machine:
#   ./dev.sh test    install what is missing (Chromium too), then lint, type-check and run every test
#   ./dev.sh demo    install what is missing, then run the Acme demo end to end
#   ./dev.sh setup   only install and prepare (npm packages, Temporal CLI, database, build)
#   ./dev.sh temporal-cluster setup|start|stop|status
#                    a production-shaped Temporal server on PostgreSQL (not needed by test or demo)
# Everything it installs outside the clone goes to $FLOWTHRU_CACHE (default ~/.cache/flowthru),
# so a second clone on the same machine skips the slow parts.
set -euo pipefail
cd "$(dirname "$0")"

TEMPORAL_CLI_VERSION=v1.5.1
FLOWTHRU_CACHE=${FLOWTHRU_CACHE:-$HOME/.cache/flowthru}
export FLOWTHRU_TEMPORAL_BIN=${FLOWTHRU_TEMPORAL_BIN:-$FLOWTHRU_CACHE/temporal-$TEMPORAL_CLI_VERSION/temporal}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/flowthru}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'flowthru setup: %s\n' "$*" >&2; exit 1; }

need_node() {
  command -v node >/dev/null || die "Node.js 20.19 or newer is needed: install it (e.g. apt-get install nodejs npm)."
  command -v npm >/dev/null || die "npm is needed: install it (e.g. apt-get install npm)."
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' ||
    die "Node.js 20.19 or newer is needed (found $(node --version)): upgrade Node.js."
}

install_npm_packages() {
  # npm ci only when the lockfile changed since the last install: it wipes node_modules each time.
  local stamp=node_modules/.flowthru-lock-hash want
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then return; fi
  say "Installing npm packages (npm ci)"
  # Dependencies' install scripts are not needed: native parts (@temporalio/core-bridge, @swc/core,
  # esbuild, recheck) ship as prebuilt optional packages.
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
}

install_temporal_cli() {
  [[ -x $FLOWTHRU_TEMPORAL_BIN ]] && return
  command -v go >/dev/null || die "Go 1.22 or newer is needed to build the Temporal CLI $TEMPORAL_CLI_VERSION: install it (e.g. apt-get install golang), or set FLOWTHRU_TEMPORAL_BIN to an existing temporal binary."
  mkdir -p "$(dirname "$FLOWTHRU_TEMPORAL_BIN")"
  (
    # Two clones setting up at once build it once.
    flock 9
    [[ -x $FLOWTHRU_TEMPORAL_BIN ]] && exit 0
    say "Building the Temporal CLI $TEMPORAL_CLI_VERSION with go install (about 6 minutes the first time)"
    local tmp
    tmp=$(mktemp -d)
    GOBIN=$tmp GOFLAGS=-mod=mod go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION" ||
      die "building the Temporal CLI failed (see the go output above)."
    mv "$tmp/temporal" "$FLOWTHRU_TEMPORAL_BIN"
    rmdir "$tmp"
  ) 9>"$FLOWTHRU_CACHE/temporal.lock"
}

ensure_postgres() {
  command -v pg_isready >/dev/null || die "PostgreSQL 13 or newer is needed: install it (e.g. apt-get install postgresql), or point DATABASE_URL at a running server."
  local host port
  host=$(node -e 'const u=new URL(process.argv[1]); console.log(u.hostname||"127.0.0.1")' "$DATABASE_URL")
  port=$(node -e 'const u=new URL(process.argv[1]); console.log(u.port||5432)' "$DATABASE_URL")
  if ! pg_isready -q -h "$host" -p "$port"; then
    if command -v pg_ctlcluster >/dev/null && [[ $host == 127.0.0.1 || $host == localhost ]]; then
      say "Starting the local PostgreSQL cluster"
      local version
      version=$(ls /etc/postgresql | sort -V | tail -1)
      pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
      for _ in $(seq 30); do pg_isready -q -h "$host" -p "$port" && break; sleep 1; done
    fi
    pg_isready -q -h "$host" -p "$port" || die "PostgreSQL is not answering at $host:$port: start it, or set DATABASE_URL."
  fi
}

install_slapd() {
  # OpenLDAP slapd + ldap-utils: the LDAP tests and the demo run their own slapd on a free port.
  scripts/ensure-slapd.sh || die "OpenLDAP slapd is needed: install it (e.g. apt-get install slapd ldap-utils)."
}

install_chromium() {
  # Debian's Chromium: the Temporal UI test drives it headless (tests only; the demo needs none).
  scripts/ensure-chromium.sh || die "Chromium is needed by the tests: install it (e.g. apt-get install chromium)."
}

build() {
  say "Building flowthru"
  npm run --silent build
}

setup() {
  need_node
  mkdir -p "$FLOWTHRU_CACHE"
  install_npm_packages
  install_temporal_cli
  ensure_postgres
  install_slapd
  build
  node bin/flowthru.js db migrate
}

run_tests() {
  say "Linting"
  npm run --silent lint
  say "Type-checking"
  npm run --silent typecheck
  say "Running the tests (each test file creates and drops a database of its own)"
  local report
  report=$(mktemp)
  local status=0
  npx vitest run --reporter=default --reporter=json --outputFile.json="$report" || status=$?
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
  ' "$report" || true
  rm -f "$report"
  return $status
}

case "${1:-}" in
  setup) setup ;;
  test)
    setup
    install_chromium
    run_tests
    ;;
  demo)
    setup
    exec node bin/flowthru.js demo "${@:2}"
    ;;
  temporal-cluster)
    mkdir -p "$FLOWTHRU_CACHE"
    install_temporal_cli
    ensure_postgres
    exec scripts/temporal-cluster.sh "${@:2}"
    ;;
  *)
    echo "usage: ./dev.sh test | demo | setup | temporal-cluster setup|start|stop|status" >&2
    exit 2
    ;;
esac
