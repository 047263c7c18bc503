#!/usr/bin/env bash
# Set up (idempotent), lint (ruff, configured in pyproject.toml) and run the test suite. Default:
# everything but tests marked slow.
# Pass --all to include slow end-to-end tests; other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0 HF_HUB_OFFLINE=1
.venv/bin/ruff check .
marker=(-m "not slow")
if [ "${1:-}" = "--all" ]; then marker=(); shift; fi
exec .venv/bin/python -m pytest "${marker[@]}" "$@"
