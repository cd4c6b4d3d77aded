// rnnfast's layer API: forward and backpropagation-through-time for one recurrent layer in one
// direction.
//
// Shape convention (used in every comment and name): T time steps, B batch entries, I input
// features, H hidden units, G gates per unit (1 RNN, 4 LSTM in order i f g o, 3 GRU in order
// r z n). Arrays are row-major, the rightmost dimension fastest; "(T, B, I) with stride ldx"
// means element (t, b, i) sits at x[(t * B + b) * ldx + i]. Weights use PyTorch's layouts:
// w_ih (G*H, I), w_hh (G*H, S), b_ih and b_hh (G*H), so they move between the two unchanged.
// S = state_size(s) is the size of h (h0, h_n, y, W_hh's columns): H, or P for an LSTM with
// projections (PyTorch's proj_size): h_t = W_hr (o_t * tanh(c_t)), w_hr (P, H), 0 < P < H, while c
// keeps H units.
//
// Ownership: the caller allocates every array, outputs and workspaces included; the kernels
// keep no pointer after they return and allocate nothing. Sizes come from the *_size functions.
// Errors in the arguments are the caller's to prevent: the Python layer validates everything.
#pragma once
#include <cstddef>
#include <cstdint>

namespace rnnfast {


using Index = std::ptrdiff_t;

// The layer-normalised cells normalise each product's row (and the LSTM's c) before the gates:
// with LN(v) = (v - mean(v)) / sqrt(var(v) + 1e-5) over a row's entries (biased variance),
// a_ih = LN(W_ih x_t) * ln_ih_weight + b_ih and a_hh = LN(W_hh h_{t-1}) * ln_hh_weight + b_hh take
// the places of the plain cells' two products; the LSTM's h_t = o tanh(LN(c_t) * ln_cell_weight +
// ln_cell_bias). A row's norm needs all its units: where threads split units (LayerSchedule's unit
// mode), each computes every row's statistics itself, in the same order, between barriers.
enum class CellKind : int { rnn_tanh = 0, rnn_relu = 1, lstm = 2, gru = 3, layernorm_lstm = 4, layernorm_gru = 5 };

// What the layer's matrix products multiply. full: the weights and activations as given (float or
// double). bfloat16 (inference, float only): the weights are bfloat16 (LayerForward's w_ih_bf16,
// w_hh_bf16: bit patterns, the upper 16 bits of a float32), and each product rounds its activations
// (x_t, h_{t-1}) to bfloat16, to nearest even; the products of pairs are exact in float32 and are
// summed in float32, k in pairs (2j, 2j + 1), the odd term first, denormals flushed. Biases, gate
// math and the carried state stay float32. int8 (inference, float only): the weights are int8
// (w_ih_i8, w_hh_i8; any value in [-128, 127]) with one float32 scale per row (w_ih_scale,
// w_hh_scale: row j's weights are w_i8[j, k] * scale[j]); each product quantizes its activations
// per row (a row of x_t, or of h_{t-1}): with m the row's largest |a_k|, q_k = rint(a_k * (127 / m))
// (float32 arithmetic, ties to even; a row with m below 2^-100 gives q = 0) and the row's scale
// m / 127; the integer sum S = sum_k q_k w_k is exact in int32 (I and H at most kInt8MaxK), and the
// product is float(S) * (row scale * weight scale). A row of x_t also gets a second digit, what the
// first leaves: q2_k = rint((a_k * (127 / m) - q_k) * 254) with scale m / 127 / 254, whose product
// is added the same way (about 15 bits for the input, 8 for h_{t-1}). Biases, gate math and the
// carried state stay float32. Inputs must be finite. Reduced precisions take no recurrent dropout.
// With projections W_hr is stored the same way (w_hr_bf16, or w_hr_i8 and w_hr_scale), and its
// product reads r_t = o_t * tanh(c_t) as W_hh's reads h_{t-1} (bfloat16, or one int8 digit a row).
// The layer-normalised cells normalise the products as they come out, in float32.
enum class Precision : int { full = 0, bfloat16 = 1, int8 = 2 };

// The largest I and H of an int8 layer: |S| <= K * 127 * 128 stays below 2^31. Part of the
// contract (like the sizes being positive); the Python bindings refuse larger layers.
constexpr Index kInt8MaxK = 131072;

constexpr int gate_count(CellKind c) {
    return c == CellKind::lstm || c == CellKind::layernorm_lstm ? 4
           : c == CellKind::gru || c == CellKind::layernorm_gru ? 3 : 1;
}
constexpr bool has_cell_state(CellKind c) { return c == CellKind::lstm || c == CellKind::layernorm_lstm; }
constexpr bool layer_normalised(CellKind c) { return c == CellKind::layernorm_lstm || c == CellKind::layernorm_gru; }

struct LayerShape {
    CellKind cell;
    Index T, B, I, H;  // all >= 1
    bool reverse;  // run time from T-1 down to 0 (the backward half of a bidirectional layer)
    bool recurrent_dropout = false;  // the recurrent product reads h_{t-1} times a (B, S) mask (recurrent_mask)
    Precision precision = Precision::full;  // bfloat16, int8: eval forwards of float layers only
    Index P = 0;  // LSTM projections: h's size (0 < P < H); 0: none
};

// The size of h: P with projections, else H.
inline Index state_size(const LayerShape& s) { return s.P ? s.P : s.H; }

template <class T>
struct LayerForward {
    LayerShape s;
    const T* x;                    // (T, B, I), stride ldx
    Index ldx;
    const T* h0;                   // (B, S), or nullptr for zeros
    const T* c0;                   // (B, H), LSTM only, or nullptr for zeros
    const T* w_ih;                 // (G*H, I)
    const T* w_hh;                 // (G*H, S)
    const T* w_hr;                 // (P, H) if s.P, else ignored
    const T* b_ih;                 // (G*H) or nullptr (no bias)
    const T* b_hh;                 // (G*H) or nullptr
    const std::int64_t* lengths;   // (B), 1 <= lengths[b] <= T, or nullptr for all T
    T* y;                          // out (T, B, S), stride ldy; zero where t >= lengths[b]
    Index ldy;
    T* h_n;                        // out (B, S): state after each entry's last valid step
    T* c_n;                        // out (B, H), LSTM only
    T* saved;                      // training: saved_size() values for backward; nullptr in eval
    T* scratch;                    // forward_scratch_size() values (for the same threads), free after the call
    T* wcache;                     // weight_cache_size(s, .., false) values kept between calls, or nullptr
    int threads;                   // threads to use at most, or 0 for get_num_threads()
    const T* zoneout;              // (T, B, S) or nullptr: zoneout masks, 1 where a unit keeps its previous
                                   // state: h_t = m h_{t-1} + (1 - m) h~_t, h~_t the cell's new state
    T zoneout_p;                   // without masks: h_t = p h_{t-1} + (1 - p) h~_t (zoneout in eval); 0: none
    bool zoneout_draws;            // training without a mask array: the kernels draw the masks, with
    std::uint64_t zoneout_seed;    //   probability zoneout_p, from this seed (ZoneoutDraw below)
    const T* recurrent_mask;       // (B, S) if s.recurrent_dropout, else ignored: the recurrent product reads
                                   // m * h_{t-1} (variational dropout; the carried state is h_{t-1} itself)
    const std::uint16_t* w_ih_bf16;  // s.precision == bfloat16: (G*H, I) and (G*H, S) bfloat16 bit patterns,
    const std::uint16_t* w_hh_bf16;  //   read instead of w_ih and w_hh (which are then ignored)
    const std::int8_t* w_ih_i8;    // s.precision == int8: (G*H, I) and (G*H, S) int8 weights, read instead
    const std::int8_t* w_hh_i8;    //   of w_ih and w_hh,
    const float* w_ih_scale;       //   and their rows' scales, (G*H) each
    const float* w_hh_scale;
    const T* ln_ih_weight;         // the layer-normalised cells: (G*H) gains of LN(W_ih x_t) and
    const T* ln_hh_weight;         //   LN(W_hh h_{t-1}) (float32 at reduced precision),
    const T* ln_cell_weight;       //   and the LSTM's (H) gain and bias of LN(c_t)
    const T* ln_cell_bias;
    const std::uint16_t* w_hr_bf16;  // with projections at bfloat16: (P, H) bit patterns, read instead of w_hr;
    const std::int8_t* w_hr_i8;      //   at int8: (P, H) int8 weights
    const float* w_hr_scale;         //   and their rows' scales (P)
};

template <class T>
struct LayerBackward {
    LayerShape s;
    const T* x;                    // (T, B, I), stride ldx: the forward's input
    Index ldx;
    const T* w_ih;                 // (G*H, I)
    const T* w_hh;                 // (G*H, S)
    const T* w_hr;                 // (P, H) if s.P
    const std::int64_t* lengths;   // as in the forward
    T* saved;                      // what the training forward saved; overwritten if consume_saved
    bool consume_saved;            // the gate gradients overwrite the saved gates: the backward's scratch
                                   // shrinks by T*B*G*H values (GRU: T*B*(G+1)*H) and `saved` serves
                                   // this one backward only. Same results either way. (The
                                   // layer-normalised cells' scratch still grows with T: their
                                   // dL/da and dL/d(W_hh h) of every step, 2-3 arrays of T*B*G*H.)
    const T* dy;                   // (T, B, S), stride lddy; ignored where t >= lengths[b]
    Index lddy;
    const T* dh_n;                 // (B, S) or nullptr
    const T* dc_n;                 // (B, H), LSTM only, or nullptr
    T* dx;                         // (T, B, I), stride lddx: overwritten, or added into if dx_accumulate
    Index lddx;
    bool dx_accumulate;
    T* dh0;                        // (B, S) overwritten
    T* dc0;                        // (B, H) overwritten, LSTM only
    T* dw_ih;                      // (G*H, I) added into
    T* dw_hh;                      // (G*H, S) added into
    T* dw_hr;                      // (P, H) added into, if s.P
    T* db_ih;                      // (G*H) added into, or nullptr
    T* db_hh;                      // (G*H) added into, or nullptr
    T* scratch;                    // backward_scratch_size() values (for the same threads, consume_saved)
    int threads;                   // threads to use (the same value given to backward_scratch_size)
    T* wcache;                     // weight_cache_size(s, .., true) values kept between calls, or nullptr
    const T* zoneout;              // the forward's zoneout masks, or nullptr
    T zoneout_p;                   // the forward's zoneout_draws, zoneout_p and zoneout_seed: the same masks
    bool zoneout_draws;
    std::uint64_t zoneout_seed;
    const T* recurrent_mask;       // the forward's recurrent mask, if s.recurrent_dropout
    const T* ln_ih_weight;         // the layer-normalised cells: the forward's gains and bias,
    const T* ln_hh_weight;
    const T* ln_cell_weight;
    const T* ln_cell_bias;
    T* dln_ih_weight;              //   and their gradients, added into
    T* dln_hh_weight;
    T* dln_cell_weight;
    T* dln_cell_bias;
};

// The zoneout masks the kernels draw (zoneout_draws): unit u of batch entry b at time t keeps its
// previous state (m = 1) when ZoneoutDraw(seed, t * B + b, p).keeps(u), i.e. when
//   mix(u * 0x9E3779B1 ^ row) < floor(p * 2^32),  row = mix(seed_lo ^ mix((t * B + b) ^ seed_hi)),
// in 32-bit unsigned arithmetic (products modulo 2^32), seed_lo and seed_hi the seed's low and high
// 32 bits, p as the layer's T, and mix(x) = x ^= x >> 16, x *= 0x7feb352d, x ^= x >> 15,
// x *= 0x846ca68b, x ^= x >> 16 (a 32-bit integer hash). No mask array exists; the backward draws
// the same masks again. rnnfast.reference.zoneout_masks gives the same masks.
struct ZoneoutDraw {
    std::uint32_t row, threshold;
    static std::uint32_t mix(std::uint32_t x) {
        x ^= x >> 16;
        x *= 0x7feb352dU;
        x ^= x >> 15;
        x *= 0x846ca68bU;
        x ^= x >> 16;
        return x;
    }
    ZoneoutDraw(std::uint64_t seed, Index row_index, double p)
        : row(mix(std::uint32_t(seed) ^ mix(std::uint32_t(row_index) ^ std::uint32_t(seed >> 32)))),
          threshold(std::uint32_t(p * 4294967296.0)) {}  // p < 1; the conversion truncates: floor
    bool keeps(Index unit) const { return mix(std::uint32_t(unit) * 0x9E3779B1U ^ row) < threshold; }
};

// Element counts (of T) of the workspaces: enough for every instruction set this CPU runs, so that
// a set_isa() from another thread between sizing and calling is harmless (a call reads the active
// set once).
Index saved_size(const LayerShape& s);
// `threads`: the value the call's `threads` will hold (0: get_num_threads() then too); a single
// step's scratch holds per-thread packing buffers (see single_step).
Index forward_scratch_size(const LayerShape& s, bool training, int elem_bytes, int threads = 0);
Index backward_scratch_size(const LayerShape& s, int elem_bytes, int threads, bool consume_saved = false);

// A single step (T = 1: every call of a cell) packs each panel of the weights just before its
// product reads it, into per-thread buffers in the scratch, so it reads the weights once; it
// neither reads nor writes a weight cache (`wcache` is ignored).
inline bool single_step(const LayerShape& s) { return s.T == 1; }

// Packed weights kept between calls (`wcache`): a forward's (backward = false: W_hh and W_ih) or a
// backward's (W_hh). The kernels compare the weights with the copy the cache holds on every call
// and repack only what changed, so in-place weight updates are always seen. Start from zeros (a
// cache filled for another layout or other weights is then refilled as needed; arbitrary memory
// could hold a valid tag over stale panels); one cache per layer and direction, never shared by
// concurrent calls. Its size depends on the element size, the cell, I (forward), H, P and the
// instruction sets the CPU runs; not on the sequence length or the batch. A single step uses none:
// its size is 0, and a cache passed to it is left untouched.
Index weight_cache_size(const LayerShape& s, int elem_bytes, bool backward);

// The layer's forward and backward, for T = float or double (the library holds those two).
template <class T> void layer_forward(const LayerForward<T>& a);
template <class T> void layer_backward(const LayerBackward<T>& a);

}  // namespace rnnfast
