#!/usr/bin/env bash
# Developer entry point. `./dev.sh run` serves the example site; `./dev.sh test` runs every test.
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
VENV=.venv

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

venv() {
  # Create .venv once; (re)install the package with the extras "$1" when setup.cfg changed.
  local stamp="$VENV/.installed-${1//,/-}"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing flask-lpcall[$1] into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$1]"
    touch "$stamp"
  fi
}

case "${1:-help}" in
  run)
    shift
    venv serve
    export FLASK_APP=example_site.app
    if [ "${LPCALL_DEMO_AGENT:-1}" != 0 ]; then
      # the Python demo agent (README: "Python peer and demo agent"); it stops with the site
      "$VENV/bin/flask" lpcall demo-agent --url "http://127.0.0.1:${PORT:-5000}" --watch-pid $$ &
    fi
    exec "$VENV/bin/flask" run --host 127.0.0.1 --port "${PORT:-5000}" "$@"
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
  bench)
    shift
    system_packages
    venv "test,dev,serve"
    exec "$VENV/bin/python" -m benchmarks "$@"
    ;;
  *)
    echo "usage: ./dev.sh run | test [pytest args] | lint | bench | readme" >&2
    exit 2
    ;;
esac
