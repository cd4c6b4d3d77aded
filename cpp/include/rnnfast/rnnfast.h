// rnnfast: forward and backpropagation-through-time for one recurrent layer in one direction.
//
// Shape convention (used in every comment and name): T time steps, B batch entries, I input
// features, H hidden units, G gates per unit (1 RNN, 4 LSTM in order i f g o, 3 GRU in order
// r z n). Arrays are row-major, the rightmost dimension fastest; "(T, B, I) with stride ldx"
// means element (t, b, i) sits at x[(t * B + b) * ldx + i]. Weights use PyTorch's layouts:
// w_ih (G*H, I), w_hh (G*H, H), b_ih and b_hh (G*H), so they move between the two unchanged.
//
// Ownership: the caller allocates every array, outputs and workspaces included; the kernels
// keep no pointer after they return and allocate nothing. Sizes come from the *_size functions.
// Errors in the arguments are the caller's to prevent: the Python layer validates everything.
#pragma once
#include <cstddef>
#include <cstdint>

namespace rnnfast {

using index = std::ptrdiff_t;

enum class CellKind : int { rnn_tanh = 0, rnn_relu = 1, lstm = 2, gru = 3 };

constexpr int gate_count(CellKind c) {
    return c == CellKind::lstm ? 4 : c == CellKind::gru ? 3 : 1;
}

struct LayerShape {
    CellKind cell;
    index T, B, I, H;  // all >= 1
    bool reverse;  // run time from T-1 down to 0 (the backward half of a bidirectional layer)
};

template <class T>
struct LayerForward {
    LayerShape s;
    const T* x;                    // (T, B, I), stride ldx
    index ldx;
    const T* h0;                   // (B, H), or nullptr for zeros
    const T* c0;                   // (B, H), LSTM only, or nullptr for zeros
    const T* w_ih;                 // (G*H, I)
    const T* w_hh;                 // (G*H, H)
    const T* b_ih;                 // (G*H) or nullptr (no bias)
    const T* b_hh;                 // (G*H) or nullptr
    const std::int64_t* lengths;   // (B), 1 <= lengths[b] <= T, or nullptr for all T
    T* y;                          // out (T, B, H), stride ldy; zero where t >= lengths[b]
    index ldy;
    T* h_n;                        // out (B, H): state after each entry's last valid step
    T* c_n;                        // out (B, H), LSTM only
    T* saved;                      // training: saved_size() values for backward; nullptr in eval
    T* scratch;                    // forward_scratch_size() values (for the same threads), free after the call
    T* wcache;                     // weight_cache_size(s, .., false) values kept between calls, or nullptr
    int threads;                   // threads to use at most, or 0 for get_num_threads()
};

template <class T>
struct LayerBackward {
    LayerShape s;
    const T* x;                    // (T, B, I), stride ldx: the forward's input
    index ldx;
    const T* w_ih;                 // (G*H, I)
    const T* w_hh;                 // (G*H, H)
    const std::int64_t* lengths;   // as in the forward
    T* saved;                      // what the training forward saved; overwritten if consume_saved
    bool consume_saved;            // the gate gradients overwrite the saved gates: the backward's scratch
                                   // shrinks by T*B*G*H values (GRU: T*B*(G+1)*H) and `saved` serves
                                   // this one backward only. Same results either way.
    const T* dy;                   // (T, B, H), stride lddy; ignored where t >= lengths[b]
    index lddy;
    const T* dh_n;                 // (B, H) or nullptr
    const T* dc_n;                 // (B, H), LSTM only, or nullptr
    T* dx;                         // (T, B, I), stride lddx: overwritten, or added into if dx_accumulate
    index lddx;
    bool dx_accumulate;
    T* dh0;                        // (B, H) overwritten
    T* dc0;                        // (B, H) overwritten, LSTM only
    T* dw_ih;                      // (G*H, I) added into
    T* dw_hh;                      // (G*H, H) added into
    T* db_ih;                      // (G*H) added into, or nullptr
    T* db_hh;                      // (G*H) added into, or nullptr
    T* scratch;                    // backward_scratch_size() values (for the same threads, consume_saved)
    int threads;                   // threads to use (the same value given to backward_scratch_size)
    T* wcache;                     // weight_cache_size(s, .., true) values kept between calls, or nullptr
};

// A linear layer on rows (a recurrent network's output head): y (N, O) = x (N, F) w^T + b, w (O, F).
template <class T>
struct LinearForward {
    index N, F, O;
    const T* x;       // (N, F)
    const T* w;       // (O, F)
    const T* b;       // (O) or nullptr
    T* y;             // out (N, O)
    T* scratch;       // linear_scratch_size() values
    int threads;      // the value given to linear_scratch_size
};
template <class T>
struct LinearBackward {
    index N, F, O;
    const T* x;       // (N, F): the forward's input
    const T* w;       // (O, F)
    const T* dy;      // (N, O)
    T* dx;            // (N, F) overwritten, or nullptr when not wanted
    T* dw;            // (O, F) added into
    T* db;            // (O) added into, or nullptr
    T* scratch;       // linear_scratch_size() values
    int threads;
};
index linear_scratch_size(index N, index F, index O, int elem_bytes, int threads);
void linear_forward(const LinearForward<float>& a);
void linear_forward(const LinearForward<double>& a);
void linear_backward(const LinearBackward<float>& a);
void linear_backward(const LinearBackward<double>& a);

// An embedding table: y (N, E) = weight[ids], weight (V, E); N ids, V rows, E values per row.
template <class T>
struct EmbeddingForward {
    index N, V, E;
    const std::int64_t* ids;     // (N), each in [0, V)
    const T* weight;             // (V, E)
    T* y;                        // out (N, E)
    int threads;                 // threads to use, or 0 for get_num_threads()
};
// dweight[ids[n]] += dy[n] for each n, in the order of n; only the rows the ids name are touched.
template <class T>
struct EmbeddingBackward {
    index N, V, E;
    const std::int64_t* ids;     // (N), each in [0, V)
    std::int64_t padding_idx;    // ids equal to it add nothing (-1: none)
    const T* dy;                 // (N, E)
    T* dweight;                  // (V, E) added into
    int threads;
};
void embedding_forward(const EmbeddingForward<float>& a);
void embedding_forward(const EmbeddingForward<double>& a);
void embedding_backward(const EmbeddingBackward<float>& a);
void embedding_backward(const EmbeddingBackward<double>& a);

// Softmax cross-entropy over C classes for N rows of logits, the loss and its gradient in one call.
// Row n counts with weight w[n] = row_weight[n] (1 without row weights), or 0 where its target is
// ignore_index. The reduction's scale s is 1 for none and sum, 1 / sum(w) for mean (0 when the
// weights sum to 0: nothing counts, so loss and gradient are zero).
enum class Reduction : int { none = 0, sum = 1, mean = 2 };
template <class T>
struct CrossEntropy {
    index N, C;
    const T* z;                    // (N, C) logits
    const std::int64_t* targets;   // (N), each in [0, C) or equal to ignore_index
    std::int64_t ignore_index;
    const T* row_weight;           // (N) finite and >= 0, or nullptr for ones
    Reduction reduction;
    T* loss;                       // out (N): w[n] (-log softmax(z[n])[targets[n]])
    T* dz;                         // out (N, C): w[n] s (softmax(z[n]) - onehot(targets[n]))
    int threads;
};
// Returns s times the sum of loss (summed in row order, in double): the reduced loss.
double cross_entropy(const CrossEntropy<float>& a);
double cross_entropy(const CrossEntropy<double>& a);

// Element counts (of T) of the workspaces: enough for every instruction set this CPU runs, so that
// a set_isa() from another thread between sizing and calling is harmless (a call reads the active
// set once).
index saved_size(const LayerShape& s);
// `threads`: the value the call's `threads` will hold (0: get_num_threads() then too); a single
// step's scratch holds per-thread packing buffers (see single_step).
index forward_scratch_size(const LayerShape& s, bool training, int elem_bytes, int threads = 0);
index backward_scratch_size(const LayerShape& s, int elem_bytes, int threads, bool consume_saved = false);

// A single step (T = 1: every call of a cell) packs each panel of the weights just before its
// product reads it, into per-thread buffers in the scratch, so it reads the weights once; it
// neither reads nor writes a weight cache (`wcache` is ignored).
inline bool single_step(const LayerShape& s) { return s.T == 1; }

// Packed weights kept between calls (`wcache`): a forward's (backward = false: W_hh and W_ih) or a
// backward's (W_hh). The kernels compare the weights with the copy the cache holds on every call
// and repack only what changed, so in-place weight updates are always seen. Start from zeros (a
// cache filled for another layout or other weights is then refilled as needed; arbitrary memory
// could hold a valid tag over stale panels); one cache per layer and direction, never shared by
// concurrent calls. Its size depends on the element size, the cell, I (forward), H and the
// instruction sets the CPU runs; not on the sequence length or the batch. A single step leaves it
// untouched.
index weight_cache_size(const LayerShape& s, int elem_bytes, bool backward);

void layer_forward(const LayerForward<float>& a);
void layer_forward(const LayerForward<double>& a);
void layer_backward(const LayerBackward<float>& a);
void layer_backward(const LayerBackward<double>& a);

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

// Instruction set in use: "avx512", "avx2" or "scalar". The best the CPU supports is picked at
// load; RNNFAST_ISA in the environment or set_isa() forces one (false if the CPU lacks it).
const char* isa();
bool set_isa(const char* name);
const char* const* available_isas();  // null-terminated list, best first

// Vectorised activations as the kernels compute them, for accuracy tests: out[i] = f(in[i]),
// f = 0 sigmoid, 1 tanh.
void activation(int f, const float* in, float* out, index n);

// Measured float32 FMA throughput of the active instruction set on `threads` threads, GFLOP/s
// (a register-only loop: the machine's arithmetic ceiling, for benchmarks to compare against).
double fma_peak_gflops(int threads);

}  // namespace rnnfast
