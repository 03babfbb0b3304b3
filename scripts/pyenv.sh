#!/usr/bin/env bash
# The project-local Python environment the suite's cross-client tests use: target/pyenv, with
# the pinned packages of scripts/python-requirements.txt (Confluent's client, python-hl7's
# mllp_send, jsonschema). Skipped when that environment already has exactly these pins.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/pyenv
req=scripts/python-requirements.txt
stamp="$venv/.requirements"
if [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s "$req" "$stamp"; then
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
cp "$req" "$stamp"
echo "Python test clients installed in $venv"
