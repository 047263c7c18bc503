#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the embedded default: local Ray, rt-sentiment.
# Extra arguments go to `tgd run`, e.g. scripts/main.sh --set ray.num_workers=1
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0 HF_HUB_OFFLINE=1
exec .venv/bin/tgd run configs/default.yaml "$@"
