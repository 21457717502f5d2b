#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need if it is missing, then runs
# lint, type checks and pytest. Usage: ./tests/run.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Real servers the integration tests start on loopback (Debian packages).
need_apt=()
command -v prometheus-alertmanager >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
# PostgreSQL for the store/HA tests (tests/support/postgres.py runs initdb + postgres itself).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
command -v runuser >/dev/null 2>&1 || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The Debian packages start their own services; the tests start private instances on free ports instead.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  ${sudo_cmd:-} systemctl stop prometheus prometheus-alertmanager postgresql >/dev/null 2>&1 || true
fi

# Python packages, in a project-local virtual environment.
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff"
.venv/bin/ruff check bot handlers tests bench
echo "== mypy"
.venv/bin/mypy
echo "== lint-imports"
.venv/bin/lint-imports --no-cache --no-logo
echo "== pytest"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
