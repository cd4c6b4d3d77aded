"""Data-parallel training of rnnfast.torch layers with torch.distributed (DistributedDataParallel, gloo, CPU).

The model reads variable-length token sequences (embedding -> 2-layer bidirectional rnnfast LSTM
over a PackedSequence -> linear) and names each sequence's most frequent token. Every step draws
one global batch from a generator seeded by the step number, the same in every process; process r
trains on its slice of the rows, and DDP averages the gradients, so each step is one step of
single-process training on the whole global batch, up to rounding (tests/test_ddp.py checks this
to 1e-5 in float64; in float32, Adam can magnify the rounding of the gradient average to about
1e-5 after a few dozen steps, where a gradient is near zero).

    python examples/ddp_train.py                                   # one process
    torchrun --nproc-per-node 2 examples/ddp_train.py              # two processes on this machine
    python examples/ddp_train.py --quick                           # a few seconds

Several machines: run the same command on each of N machines, HOST being one of them:

    torchrun --nnodes N --nproc-per-node P --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
             --rdzv-id myjob examples/ddp_train.py

Each process runs rnnfast's kernels and torch's ops on cores / (processes on this machine)
threads (`--threads` overrides). Gloo picks its network interface from the host name; where that
is wrong, set GLOO_SOCKET_IFNAME (e.g. `lo` on one machine, `eth0` across machines).
"""
import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils.rnn import pack_padded_sequence

import rnnfast
import rnnfast.torch

VOCAB, STEPS_T = 6, 24


class Classifier(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, 16)
        self.rnn = rnnfast.torch.LSTM(16, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.head = torch.nn.Linear(2 * hidden, VOCAB)

    def forward(self, tokens, lengths):
        packed = pack_padded_sequence(self.emb(tokens), lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.rnn(packed)
        return self.head(torch.cat([h_n[-2], h_n[-1]], dim=1))  # last layer, both directions


def global_batch(step, size, seed):
    """(tokens (size, T), lengths (size,), labels (size,)): the same in every process."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    tokens = torch.randint(0, VOCAB, (size, STEPS_T), generator=g)
    lengths = torch.randint(STEPS_T // 3, STEPS_T + 1, (size,), generator=g)
    valid = torch.arange(STEPS_T)[None, :] < lengths[:, None]
    counts = F.one_hot(tokens, VOCAB).mul(valid[..., None]).sum(dim=1)
    return tokens, lengths, counts.argmax(dim=1)


def threads_per_process(local_world):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // local_world)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64, help="global batch, split evenly over the processes")
    ap.add_argument("--hidden", type=int, default=48)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--threads", type=int, default=0, help="threads per process (0: cores / local processes)")
    ap.add_argument("--save", help="write the final state_dict here (torch.save, from rank 0)")
    ap.add_argument("--quick", action="store_true", help="30 steps")
    args = ap.parse_args()
    if args.quick:
        args.steps = 30

    distributed = "WORLD_SIZE" in os.environ  # set by torchrun
    if distributed:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    threads = args.threads or threads_per_process(local_world)
    rnnfast.set_num_threads(threads)
    torch.set_num_threads(threads)
    if args.batch % world:
        raise SystemExit(f"--batch {args.batch} must be a multiple of the number of processes ({world})")
    rows = slice(rank * args.batch // world, (rank + 1) * args.batch // world)

    torch.manual_seed(args.seed)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    model = Classifier(args.hidden).to(getattr(torch, args.dtype))
    train_model = DistributedDataParallel(model) if distributed else model
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    say = print if rank == 0 else (lambda *a, **k: None)
    say(f"{world} process(es), {threads} thread(s) each, global batch {args.batch}, {args.steps} steps")

    start = time.perf_counter()
    for step in range(args.steps):
        tokens, lengths, labels = global_batch(step, args.batch, args.seed)
        loss = F.cross_entropy(train_model(tokens[rows], lengths[rows]), labels[rows])
        opt.zero_grad()
        loss.backward()  # DDP averages the gradients over the processes here
        opt.step()
        if step % max(1, args.steps // 10) == 0 or step == args.steps - 1:
            shown = loss.detach().clone()
            if distributed:
                dist.all_reduce(shown)
                shown /= world
            say(f"step {step:4d}  loss {shown.item():.4f}")

    model.eval()
    with torch.no_grad():
        tokens, lengths, labels = global_batch(10**6, 2000, args.seed + 1)
        accuracy = (model(tokens, lengths).argmax(dim=1) == labels).float().mean().item()
    say(f"held-out accuracy {accuracy:.3f} (chance about {1 / VOCAB:.3f}), {time.perf_counter() - start:.1f} s")
    if args.save and rank == 0:
        torch.save(model.state_dict(), args.save)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
