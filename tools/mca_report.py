"""Static analysis of the micro-kernels' inner loops with llvm-mca: are they bound by the FMA ports?

    python tools/mca_report.py [--mca PATH] [--cxx g++] [--keep DIR] [--plain-tile MRxNV] [--embedded-rows E]

Compiles cpp/src/kernels_isa.cpp to assembly for each x86 kernel path with the flags CMakeLists.txt
gives it (no CPU is needed: this runs anywhere g++ and llvm-mca do), finds every inner loop that does
the micro-kernel's work (a block ending in a jump back to its own start, with at least 8 vector FMAs
and no calls), and runs llvm-mca on it for the CPUs that path is for. For each loop and CPU it prints
the cycles per k-iteration llvm-mca predicts and the FMA-port bound: the cycles the same loop's FMAs
alone take on that model (llvm-mca on the FMAs without the loads, broadcasts and loop control). The
ratio bound / cycles is the share of the FMA ports the loop can use; 100% means the loop is bound by
the FMA ports. Loops are named by the function they sit in (demangled, shortened).

llvm-mca 19 (Debian's llvm-19) knows Zen 4 and Sapphire Rapids; an older one skips the CPUs it lacks.
Exit status 1 when an avx512 main micro-kernel loop (the float and double instances with a full
register tile: the recurrent step's or the plain products') falls below 90% of the FMA-port bound on
any CPU model (the avx2 ones are reported), or when no such loop is found for a tile.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATHS = {  # kernel path: (vector bytes, flags as in CMakeLists.txt, CPU models, register tiles (gemm.h's
           # kMR x kNV, which its plain products share unless built otherwise), exit status on them)
    "avx512": (64, ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"],
               ["skylake-avx512", "icelake-server", "sapphirerapids", "znver4"], [(8, 2)], True),
    "avx2": (32, ["-mavx2", "-mfma"], ["haswell", "skylake", "znver3"], [(6, 2)], False),
}
FMA = re.compile(r"^\s*vfmadd\d+p[sd]\s")
LABEL = re.compile(r"^(\.L\w+):")
JUMP = re.compile(r"^\s*j\w+\s+(\.L\w+)")


def find_mca(explicit):
    for cand in [explicit, "llvm-mca-19", "/usr/lib/llvm-19/bin/llvm-mca", "llvm-mca"]:
        if cand and shutil.which(cand):
            return shutil.which(cand)
    raise SystemExit("llvm-mca not found: apt-get install llvm-19 (or pass --mca)")


def known_cpus(mca):
    out = subprocess.run([mca, "-march=x86-64", "-mcpu=help"], capture_output=True, text=True)
    return set(re.findall(r"^\s+([\w-]+)\s+- Select", out.stdout + out.stderr, re.M))


def compile_asm(path, vbytes, flags, cxx, outdir):
    asm = os.path.join(outdir, f"kernels_{path}.s")
    cmd = [cxx, "-std=c++17", "-O3", "-DNDEBUG", "-fopenmp", "-ffp-contract=fast", "-S", "-o", asm,
           f"-DRNNFAST_VBYTES={vbytes}", f"-DRNNFAST_ISA_NS=isa_{path}", f"-DRNNFAST_TABLE=kernels_{path}",
           f'-DRNNFAST_ISA_NAME="{path}"', "-I", os.path.join(ROOT, "cpp/include"), "-I", os.path.join(ROOT, "cpp/src"),
           *flags, os.path.join(ROOT, "cpp/src/kernels_isa.cpp")]
    subprocess.run(cmd, check=True)
    return asm


def loops(asm_path):
    """(function, loop body lines) for every single-block loop with >= 8 vector FMAs."""
    func, label, body, found = None, None, [], []
    with open(asm_path) as f:
        lines = f.read().splitlines()
    for line in lines:
        if re.match(r"^[A-Za-z_][\w.$]*:", line):
            func = line[:-1]
            label, body = None, []
            continue
        m = LABEL.match(line)
        if m:
            label, body = m.group(1), []
            continue
        s = line.strip()
        if not s or s.startswith(".") or s.startswith("#"):
            continue
        body.append(s)
        j = JUMP.match(line)
        if j and label:
            if j.group(1) == label and sum(bool(FMA.match(b)) for b in body) >= 8 and \
                    not any(b.startswith("call") for b in body):
                found.append((func, list(body)))
            label, body = None, []
    return found


def demangle(names):
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.split("\n")
    return out[:len(names)]


def mca_cycles(mca, cpu, lines, iterations=200):
    src = "\n".join(lines) + "\n"
    cmd = [mca, "-march=x86-64", f"-mcpu={cpu}", f"-iterations={iterations}"]
    out = subprocess.run(cmd + ["-skip-unsupported-instructions=lack-sched"], input=src, capture_output=True, text=True)
    if out.returncode != 0:  # an llvm-mca older than 19 has no -skip-unsupported-instructions
        out = subprocess.run(cmd, input=src, capture_output=True, text=True)
    m = re.search(r"Total Cycles:\s+(\d+)", out.stdout)
    if not m:
        raise SystemExit(f"llvm-mca failed on {cpu}:\n{out.stderr[-1500:]}")
    return int(m.group(1)) / iterations


def fma_only(lines):
    """The loop's FMAs alone, on registers (memory operands replaced by a register)."""
    fmas = []
    for b in lines:
        if FMA.match(b):
            fmas.append(re.sub(r"[-\w]*\(%\w+(,%\w+)?(,\d)?\)(\{1to\d+\})?", "%zmm31" if "zmm" in b else "%ymm15", b))
    return fmas


def short_name(func):
    name = re.sub(r"rnnfast::isa_\w+::", "", func)
    m = re.match(r"(?:void )?(\w+)<(.*)>\(", name)
    if not m:
        return name[:90]
    return f"{m.group(1)}<{m.group(2)}>"[:110]


# The main micro-kernel's loops: micro_block (gemm.h) instances on float or double panels whose loop
# holds the full register tile's FMAs; "float 8 x 2 tile" for the grouping, None for every other
# loop (bfloat16 pairs widened to float32 also spend cycles on the widening, by design).
MAIN = re.compile(r"micro_block<(float|double), (\d+), (\d+),")


def main_tile(name, nfma, tile):
    """name: the loop's function, demangled (whole: short_name's cut could drop the panels' type)."""
    m = MAIN.match(re.sub(r"^void ", "", re.sub(r"rnnfast::isa_\w+::", "", name)))
    if not m or (int(m.group(2)), int(m.group(3))) != tile or nfma != tile[0] * tile[1] or "Bf16" in name:
        return None
    return f"{m.group(1)} {m.group(2)} x {m.group(3)} tile"


def main():
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--mca", default=None, help="llvm-mca to use (default: llvm-mca-19, else llvm-mca)")
    ap.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    ap.add_argument("--keep", default=None, help="keep the assembly in this folder")
    ap.add_argument("--plain-tile", default=None, metavar="MRxNV",
                    help="build the avx512 plain products with this register tile (RNNFAST_AVX512_PLAIN_MR/_NV "
                         "as in tools/sweep.py) and check its loops too, e.g. 4x6")
    ap.add_argument("--embedded-rows", type=int, default=None, metavar="E",
                    help="build the avx512 kernels with E rows of the full tile taking embedded broadcasts "
                         "(RNNFAST_AVX512_EMBEDDED_ROWS as in tools/sweep.py; default: gemm.h's, none)")
    args = ap.parse_args()
    mca = find_mca(args.mca)
    cpus_known = known_cpus(mca)
    outdir = args.keep or tempfile.mkdtemp()
    os.makedirs(outdir, exist_ok=True)
    failed = []
    print(f"llvm-mca: {mca}; compiler: {args.cxx}")
    for path, (vbytes, flags, cpus, tiles, gate) in PATHS.items():
        if args.plain_tile and path == "avx512":
            mr, nv = (int(v) for v in args.plain_tile.split("x"))
            flags, tiles = flags + [f"-DRNNFAST_PLAIN_MR={mr}", f"-DRNNFAST_PLAIN_NV={nv}"], tiles + [(mr, nv)]
        if args.embedded_rows is not None and path == "avx512":
            flags = flags + [f"-DRNNFAST_EMBEDDED_ROWS={args.embedded_rows}"]
        asm = compile_asm(path, vbytes, flags, args.cxx, outdir)
        found = loops(asm)
        names = demangle([f for f, _ in found])
        cpus = [c for c in cpus if c in cpus_known]
        skipped = [c for c in PATHS[path][2] if c not in cpus_known]
        print(f"\n{path}: {len(found)} inner loops with >= 8 FMAs" +
              (f" (this llvm-mca lacks {', '.join(skipped)})" if skipped else ""))
        rows = {}  # (what, shares) -> instances: loops alike in kind and in every model's figures
        others = []
        for (func, body), name in zip(found, names):
            nfma = sum(bool(FMA.match(b)) for b in body)
            fname = short_name(name)
            figures = []
            for cpu in cpus:
                cyc = mca_cycles(mca, cpu, body)
                bound = mca_cycles(mca, cpu, fma_only(body))
                figures.append((cpu, round(cyc, 2), round(bound, 2), round(bound / cyc, 2)))
            what = next((w for w in (main_tile(name, nfma, t) for t in tiles) if w), None)
            if what is None:
                others.append((min((f[3] for f in figures), default=1.0), nfma, fname))
                continue
            rows.setdefault((what, tuple(figures)), []).append(fname)
        for mr, nv in tiles:  # a renamed kernel must not pass the check by going unseen
            if gate and not any(w.endswith(f" {mr} x {nv} tile") for w, _ in rows):
                failed.append(f"{path}: no main micro-kernel loop found (micro_block<float|double, {mr}, {nv}, ...> "
                              f"with {mr * nv} FMAs)")
        for (what, figures), fnames in rows.items():
            print(f"  {what}, {len(fnames)} instance(s), e.g. {fnames[0]}")
            print("    cycles per k / FMA-port bound, share: " +
                  "; ".join(f"{cpu} {c:5.2f}/{b:5.2f} {sh:4.0%}" for cpu, c, b, sh in figures))
            for cpu, _, _, sh in figures:
                if gate and sh < 0.9:
                    failed.append(f"{path} {what} ({fnames[0]}) on {cpu}: {sh:.0%}")
        if others:
            low = min(others)
            print(f"  {len(others)} other loops (short row blocks, split k, bfloat16 pairs, the peak loop): lowest share "
                  f"{low[0]:.0%} ({low[1]} FMAs, {low[2]})")
    if not args.keep:
        shutil.rmtree(outdir, ignore_errors=True)
    if failed:
        print("\nfailed:\n  " + "\n  ".join(failed))
        sys.exit(1)
    print("\nevery avx512 main micro-kernel loop is at >= 90% of the FMA-port bound on every CPU model")


if __name__ == "__main__":
    main()
