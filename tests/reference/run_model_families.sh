#!/usr/bin/env bash
# CTest entry (label "reference"): icae vs transformers on tiny random llama / mistral / qwen2 models
# with every supported rope setting (tests/reference/model_families_check.py).
# Exits 77 (skipped) when the project's venv has no transformers.
#   run_model_families.sh ICAE_EXECUTABLE
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/env.sh"
py="$ICAE_VENV/bin/python"
if [ ! -x "$py" ] || ! "$py" -c 'import transformers, safetensors' 2>/dev/null; then
  echo "SKIP: no reference stack in $ICAE_VENV (scripts/install-deps --reference)"
  exit 77
fi
HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error OMP_NUM_THREADS=1 exec "$py" "$here/model_families_check.py" --icae "$1"
