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
const char* const* available_isas();  // null-terminated list, best first

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
