#!/usr/bin/env bash
# Builds rnnfast with AddressSanitizer + UndefinedBehaviorSanitizer into a throw-away virtual
# environment and runs the test suite under it; then runs a small forward/backward of every cell
# under valgrind's memcheck on the normal build. Exits non-zero on any finding.
#
#   bash tools/sanitize.sh            # both
#   bash tools/sanitize.sh asan       # sanitizers only
#   bash tools/sanitize.sh valgrind   # memcheck only
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ "$what" == all || "$what" == asan ]]; then
  python3 -m venv "$work/asan"
  # shellcheck disable=SC1091
  source "$work/asan/bin/activate"
  python -m pip install -q numpy pytest hypothesis
  san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
  python -m pip install -q . -Cbuild-dir=build/sanitize \
    -Ccmake.define.CMAKE_CXX_FLAGS="$san" -Ccmake.define.CMAKE_SHARED_LINKER_FLAGS="$san" \
    -Ccmake.define.CMAKE_MODULE_LINKER_FLAGS="$san"
  # Python itself is not instrumented: preload the runtime, and skip leak checks at exit
  # (the interpreter keeps its objects alive on purpose). libstdc++ is preloaded with it so that
  # ASan's __cxa_throw interceptor finds the real one (Python does not load libstdc++ itself; without
  # it the first C++ exception aborts with "CHECK failed ... real___cxa_throw").
  LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)" \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 python -m pytest -q -x -p no:cacheprovider tests
  deactivate
  echo "sanitizers: clean"
fi

if [[ "$what" == all || "$what" == valgrind ]]; then
  command -v valgrind >/dev/null || { echo "valgrind not installed (apt-get install valgrind)"; exit 1; }
  python3 -m venv "$work/vg"
  # shellcheck disable=SC1091
  source "$work/vg/bin/activate"
  python -m pip install -q numpy .
  cat > "$work/small.py" <<'PY'
import numpy as np
import rnnfast
rng = np.random.default_rng(0)
for make in (rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU):
    for dtype in ("float32", "float64"):
        m = make(5, 7, num_layers=2, bidirectional=True, dtype=dtype, seed=0)
        x = rng.standard_normal((6, 3, 5)).astype(dtype)
        y, _ = m(x, lengths=[6, 2, 4])
        m.backward(np.ones_like(y))
        m.eval()(x)
print("ok")
PY
  # memcheck: any error whose stack passes through rnnfast's extension (_core) is a finding;
  # the interpreter's own reports (if any) are listed in the log but not ours to fix.
  PYTHONMALLOC=malloc OMP_NUM_THREADS=2 valgrind --tool=memcheck --errors-for-leak-kinds=none \
    --suppressions=tools/valgrind-python.supp --num-callers=30 --log-file="$work/vg.log" python "$work/small.py"
  grep -E "ERROR SUMMARY" "$work/vg.log"
  ours=$(awk '/^==[0-9]+== $/ {if (blk ~ /_core\.cpython|rnnfast::/ && blk ~ /(Invalid|uninitialised|Conditional|Mismatched|overlap)/) n++; blk=""; next} {blk = blk "\n" $0} END {print n+0}' "$work/vg.log")
  if [[ "$ours" != 0 ]]; then
    cat "$work/vg.log"; echo "memcheck: $ours error(s) in rnnfast"; exit 1
  fi
  echo "memcheck: clean"
fi
