# Shared settings for the scripts (sourced, not run).
ICAE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# One Python environment for libtorch, shared by every checkout on the machine: torch is ~3 GB.
ICAE_VENV="${ICAE_VENV:-$HOME/.local/share/icae/venv}"
ICAE_TORCH_VERSION="2.11.0"          # what the GPU machines run; see DESIGN.md
ICAE_TRANSFORMERS_VERSION="${ICAE_TRANSFORMERS_VERSION:-5.17.0}"   # the goldens' reference
ICAE_GGUF_VERSION="${ICAE_GGUF_VERSION:-0.19.0}"
ICAE_BUILD="${ICAE_BUILD:-$ICAE_ROOT/build}"
export ICAE_SHARED="${ICAE_SHARED:-$ICAE_ROOT/../shared}"
