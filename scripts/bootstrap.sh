#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine, and nothing that is already there.
# Idempotent: `make test` and `make run` call it every time, so it must be cheap when all is present.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

apt_install() {
    # Only root (CI, fresh machines) or passwordless sudo can install system packages.
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
            echo "bootstrap: missing system packages: $* (install them, or run as root)" >&2; exit 1
        fi
    fi
    if [ ! -f /tmp/.flareport-apt-updated ]; then
        $sudo apt-get update -qq && touch /tmp/.flareport-apt-updated
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# Podman stands in for Docker in the integration tests (no Docker engine runs on these machines); skip it with
# FLAREPORT_NEED_PODMAN=0 when a Docker engine is reachable through DOCKER_HOST.
if [ "${FLAREPORT_NEED_PODMAN:-1}" = "1" ]; then
    command -v podman >/dev/null 2>&1 || need+=(podman)
    command -v runc >/dev/null 2>&1 || need+=(runc)
    [ -x /bin/busybox ] || need+=(busybox-static)
fi
# A real Docker Engine (Debian's docker.io: dockerd, containerd) for the agent's tests on Docker and Swarm; the tests
# start their own dockerd on a private socket (tests/fptest/dockerd.py). Skip it with FLAREPORT_NEED_DOCKERD=0.
if [ "${FLAREPORT_NEED_DOCKERD:-1}" = "1" ]; then
    command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
fi
# Debian's Chromium drives the web UI tests (Playwright must never download a browser of its own here).
if [ "${FLAREPORT_NEED_BROWSER:-1}" = "1" ]; then
    [ -x /usr/bin/chromium ] || need+=(chromium)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "bootstrap: installing ${need[*]}"
    apt_install "${need[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.flareport-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    echo "bootstrap: installing the project and its dev extras into $VENV"
    # Build-backend chatter goes to a log; it is shown only when the install fails.
    if ! { "$VENV/bin/python" -m pip install -q --upgrade pip && "$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[dev]'; } \
        >"$VENV/install.log" 2>&1; then
        cat "$VENV/install.log" >&2
        echo "bootstrap: installing the project failed (log above, also in $VENV/install.log)" >&2
        exit 1
    fi
    touch "$stamp"
fi
