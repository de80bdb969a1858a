#!/usr/bin/env bash
# Installs, with apt, the system packages Switchyard's tests and benchmarks need — only those
# that are missing. Idempotent; safe to run on every test run.
#
#   scripts/ensure-deps.sh            # install what is missing
#   scripts/ensure-deps.sh --check    # only report what is missing (exit 1 if anything is)
#   scripts/ensure-deps.sh pkg...     # also make sure these extra packages are installed
#
# Works as root (CI: a fresh Debian 12 machine) or as a user with sudo. The Debian
# `postgresql` package normally creates and starts a "main" cluster on port 5432; the tests
# never use it (they start their own servers on free ports as the `postgres` OS user), so when
# the server is about to be installed we ask postgresql-common not to create that cluster.
# Likewise the MariaDB/Galera tests start their own `mariadbd`s on free ports: while apt runs, a
# temporary /usr/sbin/policy-rc.d (exit 101) keeps package scripts from starting the distro's
# services (there is no systemd in CI containers), and a system mariadbd found running afterwards
# is stopped.
set -euo pipefail

PACKAGES=(
    postgresql        # server: initdb/postgres (and pgbench) in /usr/lib/postgresql/<ver>/bin
    postgresql-client # psql (pgbench ships with the server package on Debian 12)
    haproxy           # reference behaviour / comparison benchmarks
    iperf3            # throughput benchmarks
    netcat-openbsd
    socat
    curl
    wrk               # HTTP load through mode http (http.rs)
    ca-certificates
    procps            # ps, pgrep, kill
    iproute2          # ss, ip
    python3
    openssl           # TLS tests: test CA and certificates, s_client
    passwd            # useradd, for the `postgres` user if it is missing
    gcc               # the linker driver rustc needs
    libc6-dev
    mariadb-server    # mariadbd, mariadb-install-db (MariaDB / Galera health-check tests)
    mariadb-client    # mariadb (the CLI client)
    galera-4          # /usr/lib/galera/libgalera_smm.so (wsrep provider)
    rsync             # Galera state transfer: wsrep_sst_method=rsync
    lsof              # wsrep_sst_rsync looks for its rsync daemon's port with ss or lsof
    prometheus        # /usr/bin/promtool: `promtool check metrics` (stats_page.rs)
    chromium          # headless Chromium: the stats page test and its screenshot
    keepalived        # VRRP interoperability tests (a real keepalived in the same group)
)

check_only=0
extra=()
for arg in "$@"; do
    case "$arg" in
        --check) check_only=1 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        -*) echo "ensure-deps: unknown option $arg" >&2; exit 2 ;;
        *) extra+=("$arg") ;;
    esac
done
PACKAGES+=("${extra[@]+"${extra[@]}"}")

log() { printf 'ensure-deps: %s\n' "$*" >&2; }

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    log "not a Debian/Ubuntu system (no dpkg/apt-get); install these yourself: ${PACKAGES[*]}"
    exit 1
fi

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
    log "all ${#PACKAGES[@]} packages present"
    exit 0
fi
log "missing: ${missing[*]}"
if [ "$check_only" -eq 1 ]; then
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        log "not root and no sudo: cannot install ${missing[*]}"
        exit 1
    fi
fi

# Do not let the server package create (and start) the distro's "main" cluster: decided by
# /etc/postgresql-common/createcluster.conf when postgresql-NN is configured. Only touched when
# the server is not installed yet.
server_installed=0
for p in $(dpkg-query -W -f='${Package}\n' 'postgresql-[0-9]*' 2>/dev/null || true); do
    installed "$p" && server_installed=1
done
if [ "$server_installed" -eq 0 ]; then
    conf=/etc/postgresql-common/createcluster.conf
    if ! grep -qs '^[[:space:]]*create_main_cluster[[:space:]]*=[[:space:]]*false' "$conf"; then
        log "setting create_main_cluster = false in $conf (tests start their own servers)"
        "${SUDO[@]}" mkdir -p /etc/postgresql-common
        # Drop any earlier active setting, then append ours.
        if [ -f "$conf" ]; then
            "${SUDO[@]}" sed -i 's/^[[:space:]]*create_main_cluster[[:space:]]*=.*$/#&/' "$conf"
        fi
        echo "create_main_cluster = false" | "${SUDO[@]}" tee -a "$conf" >/dev/null
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# Keep our createcluster.conf if postgresql-common is installed now (ucf and dpkg prompts).
export UCF_FORCE_CONFFOLD=1
APT=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 apt-get
     -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 -q -y)

# Another apt/dpkg may be running (an image bootstrap, a colleague): DPkg::Lock::Timeout waits
# for the dpkg lock; the retries below cover the lists lock and transient mirror errors.
update() {
    local i
    for i in 1 2 3 4 5; do
        if "${APT[@]}" update; then return 0; fi
        log "apt-get update failed (attempt $i); retrying in 15 s"
        sleep 15
    done
    return 1
}

install() {
    "${APT[@]}" install --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

# No package script may start a service while we install (invoke-rc.d asks policy-rc.d; 101 =
# "action forbidden"). Only a policy-rc.d we created is removed again.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
remove_policy() {
    if [ "$created_policy" -eq 1 ]; then
        "${SUDO[@]}" rm -f "$POLICY"
        created_policy=0
    fi
}
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, from switchyard scripts/ensure-deps.sh\nexit 101\n' |
        "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    created_policy=1
    trap remove_policy EXIT
fi

# The package lists may be absent (fresh images) or stale (404s): update, then install; if the
# install still fails, update once more and retry.
update
if ! install "${missing[@]}"; then
    log "install failed; refreshing package lists and retrying"
    sleep 10
    update
    install "${missing[@]}"
fi

still=()
for pkg in "${missing[@]}"; do
    installed "$pkg" || still+=("$pkg")
done
if [ "${#still[@]}" -ne 0 ]; then
    log "still missing after apt-get install: ${still[*]}"
    exit 1
fi
remove_policy

# Should a package script have started the distro's MariaDB anyway, stop it: the tests run their
# own servers, and a system one would hold port 3306 and memory.
system_mariadb_pids() {
    pgrep -x 'mariadbd|mysqld|mysqld_safe|mariadbd-safe' -d ' ' 2>/dev/null | tr ' ' '\n' |
        while read -r pid; do
            [ -n "$pid" ] || continue
            # The tests' servers use a my.cnf in a switchyard-maria-* temp dir; leave them be.
            if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- 'switchyard-maria-'; then
                continue
            fi
            echo "$pid"
        done
}
if [ -n "$(system_mariadb_pids)" ]; then
    log "stopping the system MariaDB server that package scripts started"
    "${SUDO[@]}" service mariadb stop >/dev/null 2>&1 || true
    sleep 2
    for pid in $(system_mariadb_pids); do
        "${SUDO[@]}" kill "$pid" 2>/dev/null || true
    done
    sleep 2
    if [ -n "$(system_mariadb_pids)" ]; then
        log "warning: a system MariaDB server is still running: $(system_mariadb_pids)"
    fi
fi
log "installed: ${missing[*]}"
