"""Time the toolkit's hot loops on rnnfast's kernels against the NumPy code they replaced.

At the sizes of the `python -m rnnfast` demo: softmax cross-entropy over (seq-len 64, batch 32,
vocab) logits and an Embedding of the vocabulary at the hidden size (128) for (64, 32) ids,
forward and backward.

    python benchmarks/toolkit_kernels.py [--threads N] [--repeats R]

Each pair is first checked (the kernel against the NumPy reference); then batches of old calls and
of new calls alternate, each batch about 20 ms, and the medians per call are printed with their
ratio.
"""
import argparse
import statistics
import time

import numpy as np

import rnnfast
from rnnfast import _validate, corpus, losses, nn


def old_embedding_forward(emb, ids):
    """Embedding.forward before the kernels: NumPy's take."""
    return emb._params["weight"].take(emb._check_ids(ids), axis=0)


def old_embedding_backward(emb, ids, grad_output):
    """Embedding.backward before the kernels: np.add.at into the touched rows."""
    dy = _validate.shaped(grad_output, "grad_output", emb.dtype, ids.shape + (emb.embedding_dim,))
    nn._embedding_backward_reference(emb.grads["weight"], ids, dy, emb.padding_idx)


def old_cross_entropy(logits, targets):
    """cross_entropy before the kernels: the same checks, then the NumPy reference."""
    return losses._cross_entropy_reference(*losses._cross_entropy_args(logits, targets, -100, None, "mean"), "mean")


def per_call_seconds(fn, n):
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def compare(name, old, new, repeats, batch_s=0.02):
    """Median seconds per call of old and new, timed alternately in batches of about batch_s each
    (so that a batch of the fast calls is not a handful: the first call of a batch wakes the
    kernels' threads, asleep while the other side ran)."""
    n_old = max(1, int(batch_s / per_call_seconds(old, 3)))
    n_new = max(1, int(batch_s / per_call_seconds(new, 3)))
    times = {"old": [], "new": []}
    for _ in range(repeats):
        times["old"].append(per_call_seconds(old, n_old))
        times["new"].append(per_call_seconds(new, n_new))
    t_old, t_new = statistics.median(times["old"]), statistics.median(times["new"])
    print(f"{name:34s} NumPy {t_old * 1e6:9.1f} us   C++ {t_new * 1e6:9.1f} us   {t_old / t_new:5.2f}x")


def main():
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--threads", type=int, default=rnnfast.get_num_threads())
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    args = p.parse_args()
    rnnfast.set_num_threads(args.threads)
    V = len(set(corpus.default_text()))
    rng = np.random.default_rng(0)
    T, B, E = args.seq_len, args.batch, args.hidden
    print(f"rnnfast {rnnfast.__version__}, isa {rnnfast.isa()}, {args.threads} thread(s); "
          f"T={T} B={B} vocab={V} E={E}, median of {args.repeats} alternating batches")

    logits = rng.standard_normal((T, B, V)).astype(np.float32) * 3
    targets = rng.integers(0, V, (T, B))
    (loss, grad), (ref_loss, ref_grad) = rnnfast.cross_entropy(logits, targets), old_cross_entropy(logits, targets)
    assert abs(loss - ref_loss) <= 1e-5 * abs(ref_loss) and np.allclose(grad, ref_grad, rtol=0, atol=1e-6)
    compare(f"cross_entropy ({T}, {B}, {V}) f32", lambda: old_cross_entropy(logits, targets),
            lambda: rnnfast.cross_entropy(logits, targets), args.repeats)

    emb = rnnfast.Embedding(V, E, seed=0)
    ids = rng.integers(0, V, (T, B))
    dy = rng.standard_normal((T, B, E)).astype(np.float32)
    assert np.array_equal(emb(ids), old_embedding_forward(emb, ids))
    emb.zero_grad()
    emb.backward(dy)
    new_grad = emb.grads["weight"].copy()
    emb.zero_grad()
    old_embedding_backward(emb, ids, dy)
    assert np.allclose(new_grad, emb.grads["weight"], rtol=1e-5, atol=1e-5)
    compare(f"Embedding.forward ({T}, {B}) -> {E}", lambda: old_embedding_forward(emb, ids), lambda: emb(ids),
            args.repeats)
    compare(f"Embedding.backward ({T}, {B}, {E})", lambda: old_embedding_backward(emb, ids, dy),
            lambda: emb.backward(dy), args.repeats)


if __name__ == "__main__":
    main()
