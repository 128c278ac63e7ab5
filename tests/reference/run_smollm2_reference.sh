#!/usr/bin/env bash
# CTest entry of the "reference" label: icae vs transformers on SmolLM2 (tests/reference/smollm2_check.py).
# Exits 77 (skipped) when the project's venv has no transformers or the model is not fetched.
#   run_smollm2_reference.sh ICAE_EXECUTABLE WORKDIR
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/env.sh"
icae="$1"
workdir="$2"
py="$ICAE_VENV/bin/python"
if [ ! -x "$py" ] || ! "$py" -c 'import transformers, gguf, safetensors' 2>/dev/null; then
  echo "SKIP: no reference stack in $ICAE_VENV (scripts/install-deps --reference)"
  exit 77
fi
model="${ICAE_SMOLLM2_GGUF:-$ICAE_ROOT/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}"
if [ ! -f "$model" ]; then
  echo "SKIP: no $model (scripts/fetch-model)"
  exit 77
fi
exec "$py" "$here/smollm2_check.py" --icae "$icae" --model "$model" --source-dir "$ICAE_ROOT" \
  --workdir "$workdir" --threads "${ICAE_REFERENCE_THREADS:-2}"
