#!/usr/bin/env bash
# Runs the test suite on the AVX-512 kernels' source without an AVX-512 CPU: builds rnnfast with
# the test-only path "avx2_w16" (the same code at 16 floats a vector: micro-kernel rows, k-blocks,
# 16 x 16 transposes, partial vectors; AVX2 instructions, two per vector operation) into a
# temporary directory and runs the whole suite with RNNFAST_ISA=avx2_w16, so that the modules,
# layers and parity tests use that path too (the `every_isa` tests also run on the others).
# What it cannot check: the AVX-512 instructions themselves (rcp14, masked max/min), which the
# real avx512 path uses where this one divides and compares.
#
#   bash tools/avx2_w16.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(mktemp -d)"
trap 'rm -rf "$target"' EXIT
# A build folder of its own: the option stays in a CMake cache, and the checkout's build folder
# (pyproject.toml) would carry it into the next `pip install .`.
python -m pip install -q --no-deps --target "$target" -C build-dir="$target/.build" \
  -C cmake.define.RNNFAST_AVX2_W16=ON .
status="$(env -u RNNFAST_ISA PYTHONPATH="$target" python - <<'PY'
import rnnfast
isas = rnnfast.available_isas()
assert rnnfast.isa() != "avx2_w16", "the test-only path must never be the default"
if "avx2" not in isas:
    print("skip")
else:
    assert "avx2_w16" in isas, isas
    print("run")
PY
)"
if [ "$status" = skip ]; then
  echo "avx2_w16: this CPU has no AVX2; nothing to run"
  exit 0
fi
export RNNFAST_ISA=avx2_w16
PYTHONPATH="$target" python -c 'import rnnfast; assert rnnfast.isa() == "avx2_w16", rnnfast.isa()'
PYTHONPATH="$target" python -m pytest -q -p no:cacheprovider "$@" tests
