#!/usr/bin/env bash
# Cross-builds the C++ library and its example for aarch64 (the portable kernel path, the only one
# on non-x86 CPUs) and runs the example under QEMU: it checks the LSTM's BPTT gradient against
# finite differences and exits non-zero if they disagree.
#
#   apt-get install g++-aarch64-linux-gnu qemu-user    # once
#   bash tools/cross_aarch64.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
cmake -S . -B "$build" -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ -DCMAKE_BUILD_TYPE=Release > "$build/configure.log"
cmake --build "$build" -j 2 > "$build/build.log"
qemu-aarch64 -L /usr/aarch64-linux-gnu "$build/lstm_example"
