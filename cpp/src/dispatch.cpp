// Picks the kernel table for this CPU, and holds the thread count.
#include "dispatch.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace rnnfast {
namespace {

bool cpu_has(const KernelTable& t) {
#ifdef RNNFAST_X86
    if (&t == &kernels_avx512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    if (&t == &kernels_avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#ifdef RNNFAST_AVX2_W16
    if (&t == &kernels_avx2_w16) return cpu_has(kernels_avx2);
#endif
#endif
    (void)t;
    return true;
}

const KernelTable* const all_tables[] = {
#ifdef RNNFAST_X86
    &kernels_avx512, &kernels_avx2,
#ifdef RNNFAST_AVX2_W16
    &kernels_avx2_w16,  // after avx2, so never the default
#endif
#endif
    &kernels_scalar, nullptr};

const KernelTable* find(const char* name) {
    for (const KernelTable* const* t = all_tables; *t; ++t)
        if (std::strcmp((*t)->name, name) == 0 && cpu_has(**t)) return *t;
    return nullptr;
}

const KernelTable* initial_table() {
    if (const char* env = std::getenv("RNNFAST_ISA"))
        if (const KernelTable* t = find(env)) return t;
    for (const KernelTable* const* t = all_tables; *t; ++t)
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
template <class F> index largest(F size) {
    index n = 0;
    for (const KernelTable* const* t = all_tables; *t; ++t)
        if (cpu_has(**t)) {
            const index m = size(**t);
            n = m > n ? m : n;
        }
    return n;
}

}  // namespace

index saved_size(const LayerShape& s) {
    return largest([&](const KernelTable& t) { return t.saved_size(s); });
}
index forward_scratch_size(const LayerShape& s, bool training, int elem_bytes, int threads) {
    return largest([&](const KernelTable& t) {
        return elem_bytes == 4 ? t.forward_scratch_f32(s, training, threads) : t.forward_scratch_f64(s, training, threads);
    });
}
index backward_scratch_size(const LayerShape& s, int elem_bytes, int threads, bool consume_saved) {
    return largest([&](const KernelTable& t) {
        return elem_bytes == 4 ? t.backward_scratch_f32(s, threads, consume_saved)
                               : t.backward_scratch_f64(s, threads, consume_saved);
    });
}

index weight_cache_size(const LayerShape& s, int elem_bytes, bool backward) {
    return largest([&](const KernelTable& t) {
        return elem_bytes == 4 ? t.weight_cache_f32(s, backward) : t.weight_cache_f64(s, backward);
    });
}

void layer_forward(const LayerForward<float>& a) { k().forward_f32(a); }
void layer_forward(const LayerForward<double>& a) { k().forward_f64(a); }
void layer_backward(const LayerBackward<float>& a) { k().backward_f32(a); }
void layer_backward(const LayerBackward<double>& a) { k().backward_f64(a); }

index linear_scratch_size(index N, index F, index O, int elem_bytes, int threads) {
    return largest([&](const KernelTable& t) {
        return elem_bytes == 4 ? t.linear_scratch_f32(N, F, O, threads) : t.linear_scratch_f64(N, F, O, threads);
    });
}
void linear_forward(const LinearForward<float>& a) { k().linear_forward_f32(a); }
void linear_forward(const LinearForward<double>& a) { k().linear_forward_f64(a); }
void linear_backward(const LinearBackward<float>& a) { k().linear_backward_f32(a); }
void linear_backward(const LinearBackward<double>& a) { k().linear_backward_f64(a); }

void embedding_forward(const EmbeddingForward<float>& a) { k().embedding_forward_f32(a); }
void embedding_forward(const EmbeddingForward<double>& a) { k().embedding_forward_f64(a); }
void embedding_backward(const EmbeddingBackward<float>& a) { k().embedding_backward_f32(a); }
void embedding_backward(const EmbeddingBackward<double>& a) { k().embedding_backward_f64(a); }
double cross_entropy(const CrossEntropy<float>& a) { return k().cross_entropy_f32(a); }
double cross_entropy(const CrossEntropy<double>& a) { return k().cross_entropy_f64(a); }

void set_num_threads(int n) { num_threads.store(n < 1 ? 1 : n); }
int get_num_threads() { return num_threads.load(); }

const char* isa() { return k().name; }
bool set_isa(const char* name) {
    const KernelTable* t = find(name);
    if (t) active.store(t);
    return t != nullptr;
}
const char* const* available_isas() {
    static const char* names[sizeof all_tables / sizeof all_tables[0]] = {};
    int n = 0;
    for (const KernelTable* const* t = all_tables; *t; ++t)
        if (cpu_has(**t)) names[n++] = (*t)->name;
    return names;
}

void activation(int f, const float* in, float* out, index n) { k().activation(f, in, out, n); }
double fma_peak_gflops(int threads) { return k().fma_peak_gflops(threads < 1 ? 1 : threads); }

}  // namespace rnnfast
