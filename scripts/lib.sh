# Shared by scripts/run and scripts/test: the virtual environment and the local services.
# shellcheck shell=bash

VENV="${URLTESTER_VENV:-.venv}"
DEFAULT_TEST_DATABASE_URL="postgresql://postgres:postgres@127.0.0.1:5432/urltester_test"
DEFAULT_TEST_BROKER_URL="amqp://guest:guest@127.0.0.1:5672//"

say() { printf '%s\n' "$*" >&2; }

LOCK="${URLTESTER_LOCK:-requirements-test.lock}"

# Installs exactly what the lock says (every package pinned, every file's sha256 checked),
# then urltester itself, editable and without resolving anything: the same bytes on every
# machine, and nothing newer until someone runs scripts/lock. pip itself is the venv's own.
install_locked() { # python lock [pip install args for urltester...]
    local python="$1" lock="$2"; shift 2
    "$python" -m pip install -q --require-hashes --no-deps -r "$lock"
    "$python" -m pip install -q --no-deps "$@"
    # A dependency added to pyproject.toml but not to the lock shows here, by name.
    "$python" -m pip check >/dev/null 2>&1 || {
        "$python" -m pip check >&2 || true
        say "$lock does not match pyproject.toml: run scripts/lock (and commit the lock files)"
        exit 2
    }
}

ensure_venv() {
    local stamp="$VENV/.installed"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        python3 -m venv "$VENV" || { say "python3 -m venv failed: install python3-venv (Debian) and retry"; exit 2; }
    fi
    # Reinstall only when the lock or pyproject.toml changed since the last install.
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$LOCK" -nt "$stamp" ]; then
        say "installing urltester into $VENV from $LOCK"
        install_locked "$VENV/bin/python" "$LOCK" -e .
        touch "$stamp"
    fi
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() { # host port seconds
    local i
    for ((i = 0; i < $3 * 4; i++)); do port_open "$1" "$2" && return 0; sleep 0.25; done
    return 1
}

is_root_debian() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_install() {
    say "installing $* from Debian's packages"
    if [ -z "${URLTESTER_APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; export URLTESTER_APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

url_host() { python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(p.hostname or "127.0.0.1", p.port or int(sys.argv[2]))' "$1" "$2"; }

ensure_postgres() {
    local url="${URLTESTER_TEST_DATABASE_URL:-$DEFAULT_TEST_DATABASE_URL}" host port
    read -r host port < <(url_host "$url" 5432)
    port_open "$host" "$port" && return 0
    if [ "$host" != 127.0.0.1 ] && [ "$host" != localhost ]; then
        say "PostgreSQL at $host:$port is unreachable; set URLTESTER_TEST_DATABASE_URL to a reachable server"
        return 1
    fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        is_root_debian || { say "PostgreSQL is not installed: install it, or set URLTESTER_TEST_DATABASE_URL"; return 1; }
        apt_install postgresql
        local fresh=1
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_port "$host" "$port" 30 || { say "PostgreSQL did not start on $host:$port"; return 1; }
    if [ -n "${fresh:-}" ]; then
        # A fresh Debian install asks for a password on TCP: give postgres the one our URL uses.
        su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
    fi
}

ensure_rabbitmq() {
    local url="${URLTESTER_TEST_BROKER_URL:-$DEFAULT_TEST_BROKER_URL}" host port
    read -r host port < <(url_host "$url" 5672)
    port_open "$host" "$port" && return 0
    if [ "$host" != 127.0.0.1 ] && [ "$host" != localhost ]; then
        say "RabbitMQ at $host:$port is unreachable; set URLTESTER_TEST_BROKER_URL to a reachable server"
        return 1
    fi
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        is_root_debian || { say "RabbitMQ is not installed: install it, or set URLTESTER_TEST_BROKER_URL"; return 1; }
        apt_install rabbitmq-server
    fi
    say "starting RabbitMQ"
    rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_port "$host" "$port" 90 || { say "RabbitMQ did not start on $host:$port"; return 1; }
    command -v rabbitmqctl >/dev/null 2>&1 && rabbitmqctl await_startup >/dev/null 2>&1 || true
}

# The conformance suite's real servers and referee (tests/conformance): installed from
# Debian's packages as root; otherwise those tests skip with the reason (fail with CI=true).
ensure_conformance_tools() {
    local missing=() tool
    for tool in nginx apache2 curl openssl linkchecker; do
        command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
    done
    [ "${#missing[@]}" = 0 ] && return 0
    if ! is_root_debian; then
        say "not installed: ${missing[*]} (the conformance tests will skip; CI=true makes them fail)"
        return 0
    fi
    # Debian starts the servers it installs where it can: the tests start their own.
    apt_install "${missing[@]}" || { say "installing ${missing[*]} failed"; return 0; }
}

# The page's browser tests (tests/api/test_page.py) drive Debian's chromium through
# chromium-driver: installed from Debian's packages as root, never downloaded by a tool.
ensure_chromium() {
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && return 0
    is_root_debian || { say "chromium is not installed: install chromium and chromium-driver for the page's tests"; return 1; }
    apt_install chromium chromium-driver
}

ensure_services() {
    local ok=0
    ensure_postgres || ok=1
    ensure_rabbitmq || ok=1
    ensure_chromium || ok=1
    if [ "$ok" != 0 ] && [ "${CI:-}" = true ]; then
        say "CI=true and a service is unreachable: the tests that need it will fail"
    fi
    return 0
}
