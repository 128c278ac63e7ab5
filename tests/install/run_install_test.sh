#!/usr/bin/env bash
# Installs icae from a build folder into a temporary prefix, builds the out-of-tree consumer
# project against it with find_package(icae), and runs it on a golden tiny model.
# Usage: run_install_test.sh BUILD_DIR SOURCE_DIR GOLDEN_DIR
set -euo pipefail
build=$1 src=$2 golden=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/icae-install-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log" || { cat "$work/install.log"; exit 1; }
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if ! cmake -S "$src/tests/install/consumer" -B "$work/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$work/prefix" >"$work/configure.log" 2>&1; then
  cat "$work/configure.log"
  exit 1
fi
cmake --build "$work/build" -j 1
"$work/build/consumer" "$golden"
