#!/usr/bin/env bash
# Installs everything the demo and the tests need into this checkout: a virtual environment with
# the pinned Python packages (.venv), one for the infrastructure checks (.venv-infra: checkov,
# azure-mgmt-* models, the azurerm provider schema) and the pinned Node tools
# (node_modules, for Azurite).
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
# checkov (the infrastructure checks) pins its own dependencies: a separate environment.
if [ ! -x .venv-infra/bin/python ]; then
  "$PYTHON" -m venv .venv-infra
fi
infra_stamp=.venv-infra/.requirements.sha256
infra_want=$(cat requirements-infra.txt requirements-infra-schema.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$infra_stamp" 2>/dev/null)" != "$infra_want" ]; then
  .venv-infra/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-infra.txt
  # The azurerm provider schema (a wheel with a jsii assembly), read by the tests, not installed.
  rm -rf .venv-infra/schemas
  .venv-infra/bin/python -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r requirements-infra-schema.txt -d .venv-infra/schemas
  echo "$infra_want" > "$infra_stamp"
fi
if [ ! -x node_modules/.bin/azurite ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
