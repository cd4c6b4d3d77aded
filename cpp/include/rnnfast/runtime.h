// rnnfast's runtime: threads, the instruction set in use, and diagnostics for tests and benchmarks.
#pragma once
#include "rnnfast/layer.h"

namespace rnnfast {

// Threads used by the kernels (default: OpenMP's maximum at load time; 1 without OpenMP).
void set_num_threads(int n);
int get_num_threads();
// Dynamic threads (on by default; RNNFAST_DYNAMIC_THREADS=0 in the environment turns them off at
// load): when other processes take the cores, so that threads keep waiting for each other at
// barriers, later calls run on fewer threads, and now and then try more again. Results are the
// same bits for any thread count, so only the speed changes. dynamic_thread_shrinks() counts the
// times calls moved to fewer threads since load (a diagnostic).
void set_dynamic_threads(bool on);
bool get_dynamic_threads();
long long dynamic_thread_shrinks();

// Instruction set in use, by name: "avx512_amx", "avx512_bf16", "avx512_vnni", "avx512",
// "avx2_vnni", "avx2" or "scalar" (available_isas() lists those this CPU runs). The best the CPU
// supports is picked at load; RNNFAST_ISA in the environment or set_isa() forces one (false if the
// CPU lacks it).
const char* isa();
bool set_isa(const char* name);
const char* const* available_isas();  // null-terminated, in this CPU's order: the default first

// The kernel table per CPU: most CPUs get the first instruction set of a fixed order that they run;
// a few, named by CPUID's vendor and family, get another order where that is faster (dispatch.cpp).
// isa_order() gives the order for any vendor ("GenuineIntel", "AuthenticAMD", ...) and family (base
// + extended, as CPUID numbers them), of every set this build has, run here or not (null-terminated;
// valid until the calling thread's next call); cpu_id() this CPU's (vendor "" and 0 where there is no
// CPUID).
struct CpuId {
    char vendor[13];
    unsigned family, model;
};
CpuId cpu_id();
const char* const* isa_order(const char* vendor, unsigned family);
// CPUID leaf 1's EAX as family and model, as the vendors number them (cpu_id's; for tests).
void cpuid_family_model(unsigned eax, unsigned* family, unsigned* model);

// Vectorised activations as the kernels compute them, for accuracy tests: out[i] = f(in[i]),
// f = 0 sigmoid, 1 tanh.
void activation(int f, const float* in, float* out, Index n);

// Rows (rows x n, dense) of activations quantized as the int8 products quantize them (Precision
// int8 in layer.h), for accuracy tests: per row, the digits q and q2 (rows x n) and their scales.
void quantize_activations(const float* in, Index rows, Index n, std::int8_t* q, float* scale, std::int8_t* q2,
                          float* scale2);

// Measured float32 FMA throughput of the active instruction set on `threads` threads, GFLOP/s
// (a register-only loop: the machine's arithmetic ceiling, for benchmarks to compare against).
double fma_peak_gflops(int threads);

}  // namespace rnnfast
