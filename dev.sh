#!/usr/bin/env bash
# Developer entry point. `./dev.sh run` serves the example site; `./dev.sh test` runs every test.
#   ./dev.sh run [--port N] [flask run options]   port: --port, else $PORT, else 5000
#   ./dev.sh install                              only set up the venv as `run` does
# VENV (default .venv) and PYTHON (default python3) choose the virtualenv and the interpreter.
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

system_packages() {
  # Real parts for the tests: Chromium, Firefox ESR, WebKitGTK (a real engine without WebRTC) under Xvfb,
  # Redis, coturn, iproute2 (network namespace), iptables (cut a media path).
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v firefox-esr >/dev/null || missing+=(firefox-esr)
  command -v WebKitWebDriver >/dev/null || missing+=(webkit2gtk-driver)
  command -v xvfb-run >/dev/null || missing+=(xvfb xauth)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v turnserver >/dev/null || missing+=(coturn)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v openssl >/dev/null || missing+=(openssl)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "installing ${missing[*]} with apt-get"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      echo "missing system packages: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
    fi
  fi
}

installed() {
  # Whether an install newer than setup.cfg/pyproject.toml covers every extra in "$1" (e.g. test's covers serve's).
  local stamp got extra ok
  for stamp in "$VENV"/.installed-*; do
    [ -f "$stamp" ] && [ ! setup.cfg -nt "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ] || continue
    got="-${stamp##*/.installed-}-"
    ok=1
    for extra in ${1//,/ }; do [[ $got == *"-$extra-"* ]] || ok=0; done
    [ $ok = 1 ] && return 0
  done
  return 1
}

venv() {
  # Create the venv once; (re)install the package with the extras "$1" when setup.cfg changed.
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  if ! installed "$1"; then
    echo "installing flask-lpcall[$1] into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$1]"
    touch "$VENV/.installed-${1//,/-}"
  fi
}

case "${1:-help}" in
  run)
    shift
    # the port: --port N / --port=N / -p N, else $PORT, else 5000; the site and the demo agent both use it
    port=${PORT:-5000}
    args=()
    while [ $# -gt 0 ]; do
      case "$1" in
        --port|-p) [ $# -ge 2 ] || { echo "$1 needs a port number" >&2; exit 2; }; port=$2; shift 2 ;;
        --port=*) port=${1#--port=}; shift ;;
        *) args+=("$1"); shift ;;
      esac
    done
    [[ $port =~ ^[0-9]+$ ]] || { echo "the port must be a number (got '$port')" >&2; exit 2; }
    venv serve
    export FLASK_APP=example_site.app
    if [ "${LPCALL_DEMO_AGENT:-1}" != 0 ]; then
      # the Python demo agent (README: "Python peer and demo agent"); it stops with the site
      "$VENV/bin/flask" lpcall demo-agent --url "http://127.0.0.1:$port" --watch-pid $$ &
    fi
    exec "$VENV/bin/flask" run --host 127.0.0.1 --port "$port" ${args[@]+"${args[@]}"}
    ;;
  install)
    venv serve
    ;;
  test)
    shift
    system_packages
    venv "test,dev,serve"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  lint)
    venv "dev"
    "$VENV/bin/ruff" check flask_lpcall tests example_site benchmarks
    ;;
  readme)
    # Regenerate README.md's configuration table from flask_lpcall.config.DEFAULTS.
    venv "dev"
    "$VENV/bin/python" - <<'PY'
import re
from pathlib import Path
from flask_lpcall.config import defaults_table
readme = Path("README.md")
start = "<!-- config-table (generated from flask_lpcall.config.DEFAULTS by ./dev.sh readme) -->"
text = re.sub(re.escape(start) + r".*?<!-- /config-table -->",
              lambda _: f"{start}\n\n{defaults_table()}\n\n<!-- /config-table -->", readme.read_text(), flags=re.DOTALL)
readme.write_text(text)
PY
    ;;
  protocol)
    # Regenerate static/lpcall/protocol.js (the browser's copy of flask_lpcall/protocol.py's words).
    venv "dev"
    "$VENV/bin/python" -c 'from pathlib import Path; from flask_lpcall.protocol import browser_module; Path("static/lpcall/protocol.js").write_text(browser_module())'
    ;;
  bench)
    shift
    system_packages
    venv "test,dev,serve"
    exec "$VENV/bin/python" -m benchmarks "$@"
    ;;
  *)
    echo "usage: ./dev.sh run [--port N] | install | test [pytest args] | lint | bench | readme | protocol" >&2
    exit 2
    ;;
esac
