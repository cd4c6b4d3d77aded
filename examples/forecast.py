"""Forecasting a noisy multi-sine series: many-to-many regression with an LSTM and MSE.

The series is three sines of different periods plus Gaussian noise. At every step t of a window
the model has seen x_0..x_t and predicts x_{t+h}, h steps ahead (many-to-many: one prediction
per step). The first steps of each window are left out of the loss with a mask (the model has
not seen enough yet). Trained on the first 80% of the series, tested on the last 20%, and
compared with the naive last-value forecast (x_{t+h} ~ x_t) and with the noise floor (the
variance of the noise, which no forecast can beat).

    python examples/forecast.py            # full mode
    python examples/forecast.py --quick    # a few seconds
"""
import argparse
import time

import numpy as np

import rnnfast

PERIODS, AMPLITUDES, PHASES = (23.0, 37.0, 61.0), (1.0, 0.6, 0.4), (0.0, 1.0, 2.0)


def make_series(n, noise, rng):
    t = np.arange(n)
    clean = sum(a * np.sin(2 * np.pi * t / p + ph) for p, a, ph in zip(PERIODS, AMPLITUDES, PHASES))
    return (clean + noise * rng.standard_normal(n)).astype(np.float32)


def windows(series, starts, length, horizon):
    """x (T, B, 1) and targets (T, B, 1): x_t and x_{t+h} for windows beginning at `starts`."""
    idx = starts[None, :] + np.arange(length)[:, None]
    return series[idx][..., None], series[idx + horizon][..., None]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few seconds, for the tests")
    p.add_argument("--horizon", type=int, default=5, help="steps ahead to predict")
    p.add_argument("--noise", type=float, default=0.1, help="standard deviation of the noise")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    length, warmup, h = 120, 20, args.horizon
    series = make_series(8000 if args.quick else 40000, args.noise, rng)
    split = int(0.8 * len(series))
    train_series, test_series = series[:split], series[split:]
    test_starts = np.arange(0, len(test_series) - length - h, 10)
    x_test, y_test = windows(test_series, test_starts, length, h)
    mask = np.zeros(length, bool)
    mask[warmup:] = True
    mask = np.broadcast_to(mask[:, None], (length, 64))  # (T, B): which steps count

    lstm, head = rnnfast.LSTM(1, args.hidden, seed=args.seed), rnnfast.Linear(args.hidden, 1, seed=args.seed + 1)
    opt = rnnfast.optim.Adam([lstm, head], lr=3e-3)
    steps = 100 if args.quick else 1500
    print(f"series of {len(series)} points (periods {', '.join(f'{p:g}' for p in PERIODS)}, noise sd {args.noise}); "
          f"predicting {h} steps ahead; {steps} Adam steps of 64 windows of {length}")

    def evaluate():
        lstm.eval(), head.eval()
        pred = head(lstm(x_test)[0])
        lstm.train(), head.train()
        return float(np.mean((pred - y_test)[warmup:] ** 2))

    start = time.perf_counter()
    for step in range(steps):
        x, y = windows(train_series, rng.integers(0, len(train_series) - length - h, 64), length, h)
        loss, dpred = rnnfast.mse_loss(head(lstm(x)[0]), y, mask=mask)
        lstm.backward(head.backward(dpred))
        rnnfast.clip_grad_norm([lstm, head], 1.0)
        opt.step()
        opt.zero_grad()
        if (step + 1) % max(1, steps // 6) == 0:
            print(f"  step {step + 1:5d}  train MSE {loss:.4f}  test MSE {evaluate():.4f}")
    model = evaluate()
    last_value = float(np.mean((x_test - y_test)[warmup:] ** 2))
    print(f"trained in {time.perf_counter() - start:.1f} s\n")
    print(f"test MSE, {h} steps ahead, on {len(test_starts)} held-out windows:")
    print(f"  LSTM                 {model:.4f}")
    print(f"  last-value baseline  {last_value:.4f}   ({last_value / model:.1f}x the LSTM's)")
    print(f"  noise floor          {args.noise ** 2:.4f}")


if __name__ == "__main__":
    main()
