#!/usr/bin/env bash
# rnnfast on a larger x86-64 machine than the project's 2-core one (more cores, AVX-512), offline:
#   tools/many_cores.sh test    build, then the whole test suite (the kernel tests run on every
#                               instruction-set path the CPU has), then the suite forced to avx2
#   tools/many_cores.sh bench   bench.py against torch on all cores, then thread scaling
#                               (--quick at 1, 2, 4, 8 threads) and avx2 on all cores
#   tools/many_cores.sh bench2  bench.py at 2 threads (the issue's 2-core setting), avx512, then avx2
# It builds with the machine's own pybind11 and scikit-build-core (no index needed). Logs and
# results go to $OUT (default /tmp/rnnfast-many-cores), the bench folders as one tar file.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/rnnfast-many-cores}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

{
    lscpu
    echo "nproc $(nproc)"
    "$py" -V
    g++ --version | head -1
    "$py" -c "import numpy, torch; print('numpy', numpy.__version__, 'torch', torch.__version__)"
} >"$out/machine.txt" 2>&1
head -30 "$out/machine.txt"

"$py" -m pip install -q --no-build-isolation --no-deps . >"$out/build.log" 2>&1 \
    || { tail -40 "$out/build.log"; exit 1; }
"$py" -c "import rnnfast; print('isa', rnnfast.isa(), 'available', rnnfast.available_isas(),
'threads', rnnfast.get_num_threads())"

case "${1:-test}" in
test)
    # With pytest-xdist: workers of 2 threads each, so that they share the cores without
    # oversubscribing them. (pytest-benchmark, where installed, refuses xdist: turned off.)
    par=()
    if "$py" -c "import xdist" 2>/dev/null; then par=(-n "$(( $(nproc) / 2 > 1 ? $(nproc) / 2 : 1 ))"); fi
    opts=(-q -p no:cacheprovider -p no:benchmark "${par[@]}")
    rc=0
    OMP_NUM_THREADS=2 "$py" -m pytest "${opts[@]}" 2>&1 | tee "$out/test_default.log" | tail -25 || rc=1
    OMP_NUM_THREADS=2 RNNFAST_ISA=avx2 "$py" -m pytest "${opts[@]}" 2>&1 | tee "$out/test_avx2.log" | tail -5 || rc=1
    exit $rc
    ;;
bench)
    b="$out/bench"
    mkdir -p "$b"
    "$py" benchmarks/bench.py --threads "$(nproc)" --budget 2 --out "$b/t$(nproc)" 2>&1 | tail -60
    for t in 1 2 4 8; do
        "$py" benchmarks/bench.py --quick --threads "$t" --out "$b/quick_t$t" 2>&1 | tail -12
    done
    RNNFAST_ISA=avx2 "$py" benchmarks/bench.py --quick --threads "$(nproc)" --out "$b/quick_t$(nproc)_avx2" 2>&1 | tail -12
    "$py" benchmarks/products.py 2>&1 | tee "$b/products.txt" | tail -12
    rm -f "$b"/*/results.png
    tar -czf "$out/bench.tar.gz" -C "$out" bench && rm -r "$b"
    ;;
bench2)
    for isa in avx512 avx2; do
        RNNFAST_ISA=$isa "$py" benchmarks/bench.py --threads 2 --budget 2 --out "$out/t2_$isa" 2>&1 | tail -45
        rm -f "$out/t2_$isa/results.png"
    done
    ;;
esac
