// rnnfast's training toolkit kernels: a linear layer, an embedding table, softmax cross-entropy.
// Conventions (row-major arrays, caller-owned memory, threads) as in layer.h.
#pragma once
#include "rnnfast/layer.h"

namespace rnnfast {
// Each function below exists for T = float and T = double.

// A linear layer on rows (a recurrent network's output head): y (N, O) = x (N, F) w^T + b, w (O, F).
template <class T>
struct LinearForward {
    Index N, F, O;
    const T* x;       // (N, F)
    const T* w;       // (O, F)
    const T* b;       // (O) or nullptr
    T* y;             // out (N, O)
    T* scratch;       // linear_scratch_size() values
    int threads;      // the value given to linear_scratch_size
};
template <class T>
struct LinearBackward {
    Index N, F, O;
    const T* x;       // (N, F): the forward's input
    const T* w;       // (O, F)
    const T* dy;      // (N, O)
    T* dx;            // (N, F) overwritten, or nullptr when not wanted
    T* dw;            // (O, F) added into
    T* db;            // (O) added into, or nullptr
    T* scratch;       // linear_scratch_size() values
    int threads;
};
Index linear_scratch_size(Index N, Index F, Index O, int elem_bytes, int threads);
template <class T> void linear_forward(const LinearForward<T>& a);
template <class T> void linear_backward(const LinearBackward<T>& a);

// An embedding table: y (N, E) = weight[ids], weight (V, E); N ids, V rows, E values per row.
template <class T>
struct EmbeddingForward {
    Index N, V, E;
    const std::int64_t* ids;     // (N), each in [0, V)
    const T* weight;             // (V, E)
    T* y;                        // out (N, E)
    int threads;                 // threads to use, or 0 for get_num_threads()
};
// dweight[ids[n]] += dy[n] for each n, in the order of n; only the rows the ids name are touched.
template <class T>
struct EmbeddingBackward {
    Index N, V, E;
    const std::int64_t* ids;     // (N), each in [0, V)
    std::int64_t padding_idx;    // ids equal to it add nothing (-1: none)
    const T* dy;                 // (N, E)
    T* dweight;                  // (V, E) added into
    int threads;
};
template <class T> void embedding_forward(const EmbeddingForward<T>& a);
template <class T> void embedding_backward(const EmbeddingBackward<T>& a);

// Softmax cross-entropy over C classes for N rows of logits, the loss and its gradient in one call.
// Row n counts with weight w[n] = row_weight[n] (1 without row weights), or 0 where its target is
// ignore_index. The reduction's scale s is 1 for none and sum, 1 / sum(w) for mean (0 when the
// weights sum to 0: nothing counts, so loss and gradient are zero).
enum class Reduction : int { none = 0, sum = 1, mean = 2 };
template <class T>
struct CrossEntropy {
    Index N, C;
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
template <class T> double cross_entropy(const CrossEntropy<T>& a);

}  // namespace rnnfast
