// Picks the kernel table for this CPU, and holds the thread count.
#include "dispatch.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#if defined(__GNUC__) && (defined(__x86_64__) || defined(_M_X64))
#include <cpuid.h>
#endif
#if defined(__linux__) && (defined(__x86_64__) || defined(_M_X64))
#include <sys/syscall.h>
#include <unistd.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include "rnnfast/runtime.h"

namespace rnnfast {
namespace {

// AMX-BF16, AMX-INT8 and their tiles: the CPU has them (CPUID 7.0 EDX bits 22, 25 and 24) and Linux
// lets this process use them (arch_prctl ARCH_REQ_XCOMP_PERM for the tile data, once; other
// systems: no).
bool amx_usable() {
#if defined(__linux__) && (defined(__x86_64__) || defined(_M_X64)) && defined(SYS_arch_prctl)
    static const bool usable = [] {
        unsigned a, b, c, d;
        if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24)) || !(d & (1u << 25)))
            return false;
        constexpr long kReqXcompPerm = 0x1023, kXtiledata = 18;
        return syscall(SYS_arch_prctl, kReqXcompPerm, kXtiledata) == 0;
    }();
    return usable;
#else
    return false;
#endif
}

bool cpu_has(const KernelTable& t) {
#ifdef RNNFAST_X86
    if (&t == &kernels_avx512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    if (&t == &kernels_avx512_vnni) return cpu_has(kernels_avx512) && __builtin_cpu_supports("avx512vnni");
    if (&t == &kernels_avx512_bf16) return cpu_has(kernels_avx512_vnni) && __builtin_cpu_supports("avx512bf16");
    if (&t == &kernels_avx512_amx) return cpu_has(kernels_avx512_bf16) && amx_usable();
    if (&t == &kernels_avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (&t == &kernels_avx2_vnni) return cpu_has(kernels_avx2) && __builtin_cpu_supports("avxvnni");
#ifdef RNNFAST_AVX2_W16
    if (&t == &kernels_avx2_w16) return cpu_has(kernels_avx2);
#endif
#endif
    (void)t;
    return true;
}

// Every table this build has, in the order a CPU is offered them unless a rule below says
// otherwise: a CPU gets the first it runs (cpu_has).
const KernelTable* const all_tables[] = {
#ifdef RNNFAST_X86
    &kernels_avx512_amx, &kernels_avx512_vnni, &kernels_avx512, &kernels_avx2_vnni, &kernels_avx2,
    &kernels_avx512_bf16,  // last of the x86 paths: ahead of others only where a rule below puts it
#ifdef RNNFAST_AVX2_W16
    &kernels_avx2_w16,  // after avx2, so never the default
#endif
#endif
    &kernels_scalar, nullptr};
constexpr int kTables = sizeof all_tables / sizeof all_tables[0] - 1;

// The kernel table per CPU, where the features alone do not pick the fastest: for the CPUs of one
// vendor and family range, `first` goes ahead of `ahead_of`. Each rule rests on measurements
// (benchmarks/RESULTS.md, "The kernel table per CPU"); a CPU no rule names keeps all_tables' order.
// Deterministic (CPUID only, never a timing); RNNFAST_ISA and set_isa() override it.
struct CpuRule {
    const char* vendor;               // CPUID's vendor string
    unsigned family_min, family_max;  // CPUID's family (base + extended)
    const KernelTable* first;
    const KernelTable* ahead_of;
};
const CpuRule cpu_rules[] = {
#ifdef RNNFAST_X86
    // AMD Zen 4 and Zen 5 (families 0x19 and 0x1A; of 0x19 only Zen 4 has AVX512-BF16, Zen 3 runs
    // neither path): bfloat16 products on vdpbf16ps rather than widened to float32 FMAs, measured
    // faster on Zen 4 (by rnnfast) and expected so on Zen 5 (by torch's bfloat16 speed there); on
    // the Intel Xeon measured it is slower (and AMX comes first there). RESULTS.md.
    {"AuthenticAMD", 0x19, 0x1A, &kernels_avx512_bf16, &kernels_avx512_vnni},
#endif
    {nullptr, 0, 0, nullptr, nullptr}};

// all_tables in the order a CPU of `vendor` and `family` is offered them; null-terminated.
struct TableOrder {
    const KernelTable* t[kTables + 1];
};
TableOrder order_for(const char* vendor, unsigned family) {
    TableOrder o;
    for (int i = 0; i <= kTables; ++i) o.t[i] = all_tables[i];
    auto position = [&](const KernelTable* t) {
        int i = 0;
        while (o.t[i] && o.t[i] != t) ++i;
        return i;
    };
    for (const CpuRule* r = cpu_rules; r->vendor; ++r) {
        if (std::strcmp(r->vendor, vendor) != 0 || family < r->family_min || family > r->family_max) continue;
        int from = position(r->first);
        const int to = position(r->ahead_of);
        if (!o.t[from] || !o.t[to] || from < to) continue;
        for (; from > to; --from) o.t[from] = o.t[from - 1];
        o.t[to] = r->first;
    }
    return o;
}

CpuId read_cpu_id() {
    CpuId id{};
#if defined(RNNFAST_X86) && defined(__GNUC__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return id;
    std::memcpy(id.vendor, &b, 4);
    std::memcpy(id.vendor + 4, &d, 4);
    std::memcpy(id.vendor + 8, &c, 4);
    if (!__get_cpuid(1, &a, &b, &c, &d)) return id;
    cpuid_family_model(a, &id.family, &id.model);
#endif
    return id;
}
// Function-local, so that no static initialiser depends on the order of the ones above.
const CpuId& this_cpu() {
    static const CpuId id = read_cpu_id();
    return id;
}
const TableOrder& this_order() {
    static const TableOrder o = order_for(this_cpu().vendor, this_cpu().family);
    return o;
}

const KernelTable* find(const char* name) {
    for (const KernelTable* const* t = all_tables; *t; ++t)
        if (std::strcmp((*t)->name, name) == 0 && cpu_has(**t)) return *t;
    return nullptr;
}

const KernelTable* initial_table() {
    if (const char* env = std::getenv("RNNFAST_ISA"))
        if (const KernelTable* t = find(env)) return t;
    for (const KernelTable* const* t = this_order().t; *t; ++t)
        if (cpu_has(**t)) return *t;
    return &kernels_scalar;
}

std::atomic<const KernelTable*> active{initial_table()};

int initial_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
std::atomic<int> num_threads{initial_threads()};

// A call reads the active table once and runs on it to the end.
const KernelTable& k() { return *active.load(std::memory_order_relaxed); }

// Workspace sizes fit every table this CPU runs, not only the active one: another thread's
// set_isa() may switch tables between a caller sizing its buffers and the call that uses them.
template <class F> Index largest(F size) {
    Index n = 0;
    for (const KernelTable* const* t = all_tables; *t; ++t)
        if (cpu_has(**t)) {
            const Index m = size(**t);
            n = m > n ? m : n;
        }
    return n;
}

// f(T{}) with T the scalar type of elem_bytes (4: float, 8: double).
template <class F> Index by_elem(int elem_bytes, F f) { return elem_bytes == 4 ? f(float{}) : f(double{}); }

}  // namespace

Index saved_size(const LayerShape& s) {
    return largest([&](const KernelTable& t) { return t.saved_size(s); });
}
Index forward_scratch_size(const LayerShape& s, bool training, int elem_bytes, int threads) {
    return by_elem(elem_bytes, [&](auto x) {
        return largest([&](const KernelTable& t) { return t.of<decltype(x)>().forward_scratch(s, training, threads); });
    });
}
Index backward_scratch_size(const LayerShape& s, int elem_bytes, int threads, bool consume_saved) {
    return by_elem(elem_bytes, [&](auto x) {
        return largest([&](const KernelTable& t) { return t.of<decltype(x)>().backward_scratch(s, threads, consume_saved); });
    });
}
Index weight_cache_size(const LayerShape& s, int elem_bytes, bool backward) {
    if (single_step(s)) return 0;  // packs as it goes: no cache
    return by_elem(elem_bytes, [&](auto x) {
        return largest([&](const KernelTable& t) { return t.of<decltype(x)>().weight_cache(s, backward); });
    });
}
Index linear_scratch_size(Index N, Index F, Index O, int elem_bytes, int threads) {
    return by_elem(elem_bytes, [&](auto x) {
        return largest([&](const KernelTable& t) { return t.of<decltype(x)>().linear_scratch(N, F, O, threads); });
    });
}

template <class T> void layer_forward(const LayerForward<T>& a) { k().of<T>().layer_forward(a); }
template <class T> void layer_backward(const LayerBackward<T>& a) { k().of<T>().layer_backward(a); }
template <class T> void linear_forward(const LinearForward<T>& a) { k().of<T>().linear_forward(a); }
template <class T> void linear_backward(const LinearBackward<T>& a) { k().of<T>().linear_backward(a); }
template <class T> void embedding_forward(const EmbeddingForward<T>& a) { k().of<T>().embedding_forward(a); }
template <class T> void embedding_backward(const EmbeddingBackward<T>& a) { k().of<T>().embedding_backward(a); }
template <class T> double cross_entropy(const CrossEntropy<T>& a) { return k().of<T>().cross_entropy(a); }

// The public entry points exist for float and double.
#define RNNFAST_FOR_BOTH(T)                                              \
    template void layer_forward<T>(const LayerForward<T>&);              \
    template void layer_backward<T>(const LayerBackward<T>&);            \
    template void linear_forward<T>(const LinearForward<T>&);            \
    template void linear_backward<T>(const LinearBackward<T>&);          \
    template void embedding_forward<T>(const EmbeddingForward<T>&);      \
    template void embedding_backward<T>(const EmbeddingBackward<T>&);    \
    template double cross_entropy<T>(const CrossEntropy<T>&);
RNNFAST_FOR_BOTH(float)
RNNFAST_FOR_BOTH(double)
#undef RNNFAST_FOR_BOTH

void set_num_threads(int n) { num_threads.store(n < 1 ? 1 : n); }
int get_num_threads() { return num_threads.load(); }

const char* isa() { return k().name; }
bool set_isa(const char* name) {
    const KernelTable* t = find(name);
    if (t) active.store(t);
    return t != nullptr;
}
const char* const* available_isas() {
    static const char* names[kTables + 1] = {};
    int n = 0;
    for (const KernelTable* const* t = this_order().t; *t; ++t)
        if (cpu_has(**t)) names[n++] = (*t)->name;
    return names;
}
CpuId cpu_id() { return this_cpu(); }
void cpuid_family_model(unsigned eax, unsigned* family, unsigned* model) {
    const unsigned base_family = (eax >> 8) & 0xF, base_model = (eax >> 4) & 0xF;
    *family = base_family == 0xF ? base_family + ((eax >> 20) & 0xFF) : base_family;
    *model = base_family == 0x6 || base_family == 0xF ? ((eax >> 12) & 0xF0) | base_model : base_model;
}
const char* const* isa_order(const char* vendor, unsigned family) {
    thread_local const char* names[kTables + 1];
    const TableOrder o = order_for(vendor ? vendor : "", family);
    for (int i = 0; i <= kTables; ++i) names[i] = o.t[i] ? o.t[i]->name : nullptr;
    return names;
}

void activation(int f, const float* in, float* out, Index n) { k().activation(f, in, out, n); }
void quantize_activations(const float* in, Index rows, Index n, std::int8_t* q, float* scale, std::int8_t* q2,
                          float* scale2) {
    k().quantize_activations(in, rows, n, q, scale, q2, scale2);
}
double fma_peak_gflops(int threads) { return k().fma_peak_gflops(threads < 1 ? 1 : threads); }

}  // namespace rnnfast
