#!/usr/bin/env bash
# The one command that runs every test of Pipeline on a fresh machine.
#
#   scripts/test.sh [extra cargo test args...]     e.g. scripts/test.sh -p pipeline-tests -- erc20
#
# Idempotent: tools go into the git-ignored .tools/ and are reused when present at the pinned version.
#   1. the wasm32-unknown-unknown Rust target (and gcc + make from Debian if missing: SQLite and
#      jemalloc are built from C)
#   2. anvil (npm @foundry-rs/anvil-linux-amd64) and solc (npm solc), which compiles
#      tests/contracts/TestToken.sol into .tools/contracts/TestToken.bin
#   3. .tools/venv with standardwebhooks (the independent signature verifier) and schemathesis (the
#      API fuzzer run against a live host by tests/tests/schemathesis.rs); for the console's
#      browser tests Debian's chromium (/usr/bin/chromium) and npm playwright-core into .tools/npm
#   4. PostgreSQL on 127.0.0.1:5432 (used if it answers, else installed and started) with database `test`;
#      the server binaries (initdb, pg_ctl) for the fault harness' private server in any case
#   5. the plugins (wasm, release) and the host binary `pipeline` (debug)
#   6. promtool check/test rules on deploy/prometheus/alerts.yml, cargo test --workspace, then
#      clippy (-D warnings) and rustfmt --check
# PIPELINE_SETUP_ONLY=1 stops after step 4.
set -euo pipefail

ANVIL_PKG="@foundry-rs/anvil-linux-amd64"
ANVIL_VERSION="1.7.1"
SOLC_VERSION="0.8.30"
STANDARDWEBHOOKS_VERSION="1.1.0"
SCHEMATHESIS_VERSION="4.32.5"
PLAYWRIGHT_VERSION="1.65.1"
PLUGINS=(erc20-transfers passthrough address-watch uniswap-v3-swaps)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TOOLS="$ROOT/.tools"
NPM_PREFIX="$TOOLS/npm"
mkdir -p "$TOOLS"

step() { printf '\n==> %s\n' "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
fi

# A relative CARGO_TARGET_DIR would mean something else to the tests (they run in tests/).
if [[ -n "${CARGO_TARGET_DIR:-}" && "${CARGO_TARGET_DIR}" != /* ]]; then
    export CARGO_TARGET_DIR="$ROOT/$CARGO_TARGET_DIR"
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

# ---------------------------------------------------------------------------------------------------
step "1/6 Rust target wasm32-unknown-unknown"
if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "already installed"
else
    run rustup target add wasm32-unknown-unknown
fi
for component in clippy rustfmt; do
    rustup component list --installed | grep -q "^$component" || run rustup component add "$component"
done
# A C compiler and make: SQLite and jemalloc (the host's allocator) are built from C sources.
if ! command -v cc >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
    run $SUDO apt-get update
    run $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y gcc make
fi

# ---------------------------------------------------------------------------------------------------
step "2/6 anvil $ANVIL_VERSION and solc $SOLC_VERSION (npm, into .tools/npm)"
npm_version() { # installed version of npm package $1 under .tools/npm, or nothing
    local pj="$NPM_PREFIX/node_modules/$1/package.json"
    [[ -f "$pj" ]] && node -p "require(process.argv[1]).version" "$pj" 2>/dev/null || true
}
if [[ "$(npm_version "$ANVIL_PKG")" == "$ANVIL_VERSION" && "$(npm_version solc)" == "$SOLC_VERSION" ]]; then
    echo "already installed"
else
    command -v npm >/dev/null 2>&1 || die "npm is required (it installs anvil and solc)"
    run npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --save-exact --loglevel=error \
        "$ANVIL_PKG@$ANVIL_VERSION" "solc@$SOLC_VERSION"
fi
ANVIL="$NPM_PREFIX/node_modules/$ANVIL_PKG/bin/anvil"
[[ -f "$ANVIL" ]] || die "anvil binary not found at $ANVIL after npm install"
chmod +x "$ANVIL"
run "$ANVIL" --version

SOLCJS="$NPM_PREFIX/node_modules/solc/solc.js"
CONTRACT_SRC="tests/contracts/TestToken.sol"
CONTRACT_DIR="$TOOLS/contracts"
TOKEN_BIN="$CONTRACT_DIR/TestToken.bin"
STAMP="solc=$SOLC_VERSION sha256=$(sha256sum "$CONTRACT_SRC" | cut -d' ' -f1)"
if [[ -s "$TOKEN_BIN" && -f "$CONTRACT_DIR/TestToken.stamp" && "$(cat "$CONTRACT_DIR/TestToken.stamp")" == "$STAMP" ]]; then
    echo "TestToken.bin is up to date ($STAMP)"
else
    rm -rf "$CONTRACT_DIR/build"
    mkdir -p "$CONTRACT_DIR/build"
    run node "$SOLCJS" --bin --optimize --base-path . -o "$CONTRACT_DIR/build" "$CONTRACT_SRC"
    built=("$CONTRACT_DIR"/build/*TestToken_sol_TestToken.bin)
    [[ -s "${built[0]}" ]] || die "solc produced no TestToken bytecode in $CONTRACT_DIR/build"
    cp "${built[0]}" "$TOKEN_BIN"
    echo "$STAMP" > "$CONTRACT_DIR/TestToken.stamp"
    echo "compiled $TOKEN_BIN ($(wc -c < "$TOKEN_BIN") hex chars)"
fi

# ---------------------------------------------------------------------------------------------------
step "3/6 outside verifiers: Python venv with standardwebhooks $STANDARDWEBHOOKS_VERSION and schemathesis $SCHEMATHESIS_VERSION (.tools/venv)"
VENV="$TOOLS/venv"
PY="$VENV/bin/python"
has_python_package() { # $1 name, $2 version
    [[ -x "$PY" ]] && "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null
}
for pkg in "standardwebhooks==$STANDARDWEBHOOKS_VERSION" "schemathesis==$SCHEMATHESIS_VERSION"; do
    if has_python_package "${pkg%%==*}" "${pkg##*==}"; then
        echo "$pkg already installed"
    else
        [[ -x "$PY" ]] || run python3 -m venv "$VENV"
        run "$PY" -m pip install --quiet --disable-pip-version-check "$pkg"
        has_python_package "${pkg%%==*}" "${pkg##*==}" || die "$pkg is not importable from $PY"
    fi
done

# promtool (Debian package prometheus) checks the /metrics exposition. Only the binary is extracted
# into .tools/, so no Prometheus server gets installed or started.
PROMTOOL="$TOOLS/promtool/usr/bin/promtool"
if [[ -x "$PROMTOOL" ]]; then
    echo "promtool already extracted"
else
    mkdir -p "$TOOLS/promtool/deb"
    (cd "$TOOLS/promtool/deb" && { apt-get download prometheus 2>/dev/null || { run $SUDO apt-get update && apt-get download prometheus; }; })
    run dpkg-deb -x "$(ls "$TOOLS"/promtool/deb/prometheus_*.deb | head -n1)" "$TOOLS/promtool"
    rm -f "$TOOLS/promtool/usr/bin/prometheus"
fi
run "$PROMTOOL" --version

# The console's browser tests (tests/tests/console.rs): Debian's chromium, driven by playwright-core.
CHROMIUM="${PIPELINE_CHROMIUM:-/usr/bin/chromium}"
if [[ -x "$CHROMIUM" ]]; then
    echo "chromium found at $CHROMIUM"
else
    run $SUDO apt-get update
    run $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
if [[ "$(npm_version playwright-core)" == "$PLAYWRIGHT_VERSION" ]]; then
    echo "playwright-core $PLAYWRIGHT_VERSION already installed"
else
    run npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --save-exact --loglevel=error \
        "playwright-core@$PLAYWRIGHT_VERSION"
fi

# ---------------------------------------------------------------------------------------------------
step "4/6 PostgreSQL on 127.0.0.1:5432"
PG_URL_DEFAULT="postgres://postgres@127.0.0.1:5432/test"
pg_up() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h 127.0.0.1 -p 5432
    else
        (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
    fi
}
start_local_postgres() {
    if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
        run $SUDO apt-get update
        run $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
    fi
    local ver
    ver="$(ls /usr/lib/postgresql | sort -V | tail -n1)"
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$ver main"; then
        run $SUDO pg_createcluster --port 5432 "$ver" main
    fi
    local hba="/etc/postgresql/$ver/main/pg_hba.conf"
    if ! $SUDO grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
        echo "+ trust local TCP connections in $hba"
        $SUDO sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    fi
    run $SUDO pg_ctlcluster "$ver" main start || run $SUDO pg_ctlcluster "$ver" main reload
    for _ in $(seq 1 60); do pg_up && return 0; sleep 0.5; done
    die "PostgreSQL $ver did not come up on 127.0.0.1:5432"
}
if [[ -n "${PIPELINE_TEST_POSTGRES_URL:-}" ]]; then
    echo "using PIPELINE_TEST_POSTGRES_URL from the environment"
else
    if pg_up; then
        echo "a server answers on 127.0.0.1:5432"
    else
        echo "nothing answers on 127.0.0.1:5432: installing/starting a local cluster"
        start_local_postgres
    fi
    if command -v psql >/dev/null 2>&1; then
        if [[ "$(psql -w "postgres://postgres@127.0.0.1:5432/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != "1" ]]; then
            run psql -w "postgres://postgres@127.0.0.1:5432/postgres" -c "CREATE DATABASE test"
        fi
        psql -w "$PG_URL_DEFAULT" -tAc "SELECT 'connected to ' || current_database() || ' as ' || current_user"
    fi
    export PIPELINE_TEST_POSTGRES_URL="$PG_URL_DEFAULT"
fi

# The fault harness (tests/tests/faults.rs) restarts a PostgreSQL server under load: a private one it
# initdb's itself, never the shared server above. It needs the server binaries even when the server
# above is elsewhere (a CI service container).
if [[ -z "${PIPELINE_TEST_PG_BIN:-}" ]]; then
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        run $SUDO apt-get update
        run $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
    fi
    PIPELINE_TEST_PG_BIN="/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -V | tail -n1)/bin"
    export PIPELINE_TEST_PG_BIN
fi
echo "PostgreSQL server binaries for the fault harness: $PIPELINE_TEST_PG_BIN"

if [[ "${PIPELINE_SETUP_ONLY:-}" == "1" ]]; then
    echo "PIPELINE_SETUP_ONLY=1: tools and PostgreSQL are ready; stopping before the build"
    exit 0
fi

# ---------------------------------------------------------------------------------------------------
step "5/6 build: plugins (wasm32, release) and the host binary"
pkg_args=()
for p in "${PLUGINS[@]}"; do pkg_args+=(-p "$p"); done
run cargo build --release --target wasm32-unknown-unknown "${pkg_args[@]}"
run cargo build -p pipeline-host --bin pipeline

# ---------------------------------------------------------------------------------------------------
# The operator's alert rules (deploy/prometheus/): valid, and each fires on what it describes
# (alerts.test.yml). The dashboard is checked against a live host by tests/tests/operations.rs.
step "alert rules: promtool check rules, promtool test rules"
run "$PROMTOOL" check rules deploy/prometheus/alerts.yml
run "$PROMTOOL" test rules deploy/prometheus/alerts.test.yml

# ---------------------------------------------------------------------------------------------------
step "6/6 cargo test --workspace $*"
export PIPELINE_ANVIL="$ANVIL"
export PIPELINE_TEST_TOKEN_BIN="$TOKEN_BIN"
export PIPELINE_TEST_PYTHON="$PY"
export PIPELINE_PROMTOOL="$PROMTOOL"
export PIPELINE_CHROMIUM="$CHROMIUM"
export PIPELINE_BIN="$TARGET_DIR/debug/pipeline"
export PIPELINE_REQUIRE_POSTGRES=1
# The host's unit tests each create a fresh database and list it here; they are dropped when this
# script ends, however it ends (a test cannot drop its own while its store is open).
PIPELINE_TEST_CREATED_DATABASES="$(mktemp)"
export PIPELINE_TEST_CREATED_DATABASES
drop_test_databases() {
    local server="${PIPELINE_TEST_POSTGRES_URL%/*}/postgres" name dropped=0
    if command -v psql >/dev/null 2>&1; then
        while read -r name; do
            [[ "$name" =~ ^pipeline_unit_[0-9]+$ ]] || continue
            psql -w "$server" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 &&
                dropped=$((dropped + 1))
        done <"$PIPELINE_TEST_CREATED_DATABASES"
        echo "dropped $dropped unit-test databases"
    else
        echo "psql not found: the unit-test databases listed in $PIPELINE_TEST_CREATED_DATABASES stay"
        return 0
    fi
    rm -f "$PIPELINE_TEST_CREATED_DATABASES"
}
trap drop_test_databases EXIT
echo "PIPELINE_ANVIL=$PIPELINE_ANVIL"
echo "PIPELINE_TEST_TOKEN_BIN=$PIPELINE_TEST_TOKEN_BIN"
echo "PIPELINE_TEST_PYTHON=$PIPELINE_TEST_PYTHON"
echo "PIPELINE_TEST_POSTGRES_URL=$PIPELINE_TEST_POSTGRES_URL"
echo "PIPELINE_BIN=$PIPELINE_BIN"
run cargo test --workspace --no-fail-fast "$@"

# ---------------------------------------------------------------------------------------------------
# Rule 1 of DESIGN §6 (no unwrap/expect/panic in host production code) is a clippy lint: enforce it,
# with every other warning, and the formatting, on every run.
step "lints: cargo clippy -D warnings, cargo fmt --check"
run cargo clippy --workspace --all-targets --quiet -- -D warnings
run cargo fmt --all -- --check
