"""`python -m rnnfast`: a character-level language model, trained and sampled.

Given the start of a text, the model predicts the next character. The corpus (by default the
sentences of `rnnfast.corpus`, or --text FILE) is cut into B parallel streams that are read in
chunks of --seq-len steps with truncated BPTT (the state carries over from chunk to chunk, the
gradient does not); each chunk is one Adam step. Inputs are one-hot characters; a recurrent layer
(stack) and a Linear head give the next character's logits. Generation feeds the model its own
samples one character at a time through the single-step cells (RNNCell / LSTMCell / GRUCell)
loaded with the trained layer's weights. Everything it writes goes to --out: the checkpoint
(rnnfast_charlm.npz) and, when matplotlib is importable, the loss curve (rnnfast_loss.png).
"""
from __future__ import annotations

import argparse
import codecs
import math
import os
import sys
import time

import numpy as np

import rnnfast
from rnnfast import corpus
from rnnfast._registry import REGULARISERS

# The layer, and the single-step cell that samples (None: the layer samples, a step a call).
CELLS = {"lstm": (rnnfast.LSTM, rnnfast.LSTMCell), "gru": (rnnfast.GRU, rnnfast.GRUCell),
         "rnn": (rnnfast.RNN, rnnfast.RNNCell), "lnlstm": (rnnfast.LayerNormLSTM, None),
         "lngru": (rnnfast.LayerNormGRU, None)}
CHECKPOINT, PLOT = "rnnfast_charlm.npz", "rnnfast_loss.png"


MODEL_DEFAULTS = {"cell": "lstm", "hidden": 128, "layers": 1, "proj": 0}  # a checkpoint's own replace these
HINT_STEPS = 500  # Adam steps after which the default model's samples read as words, on small texts
EPOCHS = 12


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m rnnfast", description=__doc__.split("\n\n")[0])
    p.add_argument("--text", metavar="FILE", help="train on this text file (default: the built-in corpus)")
    p.add_argument("--encoding", default="utf-8", help="the text file's encoding (default: %(default)s)")
    p.add_argument("--cell", choices=sorted(CELLS),
                   help="recurrent layer, lnlstm and lngru the layer-normalised LSTM and GRU (default: lstm, or "
                        "the checkpoint's)")
    p.add_argument("--hidden", type=int, help="hidden size (default: 128, or the checkpoint's)")
    p.add_argument("--layers", type=int, help="stacked recurrent layers (default: 1, or the checkpoint's)")
    p.add_argument("--proj", type=int, metavar="P",
                   help="LSTM projections: the hidden state has P units, fewer than --hidden (torch's proj_size; "
                        "default: none, or the checkpoint's)")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="passes over the training text (default: %(default)s)")
    p.add_argument("--seq-len", type=int, default=64, help="steps per truncated-BPTT chunk (default: %(default)s)")
    p.add_argument("--batch", type=int, default=32, help="parallel streams (default: %(default)s)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clipping threshold (default: %(default)s)")
    p.add_argument("--zoneout", type=float, default=0.0, metavar="P",
                   help="in training each hidden unit keeps its previous value with probability P, a fresh mask "
                        "each step (default: %(default)s)")
    p.add_argument("--weight-drop", type=float, default=0.0, metavar="P",
                   help="drop each recurrent weight with probability P in training, a fresh mask each chunk "
                        "(DropConnect, as in AWD-LSTM; default: %(default)s)")
    p.add_argument("--recurrent-dropout", type=float, default=0.0, metavar="P",
                   help="in training drop each hidden unit with probability P where the state enters the next "
                        "step's recurrent product, one mask per chunk (variational dropout; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the sampling (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.7,
                   help="sampling temperature, 0 for always the likeliest character (default: %(default)s)")
    p.add_argument("--prompt", help='start of the generated text (default: "The " when the text has those '
                   "characters, else one random character)")
    p.add_argument("--length", type=int, default=300, help="characters to generate (default: %(default)s)")
    p.add_argument("--precision", choices=("float32", "bfloat16", "int8"), default="float32",
                   help="weights of the model that writes the samples (bfloat16, int8: rnnfast.quantize; after "
                        "training its validation loss is printed beside float32's; default: %(default)s)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue from a checkpoint written by this program")
    p.add_argument("--sample-only", action="store_true",
                   help="only generate text from --resume CHECKPOINT, or from the checkpoint in --out")
    p.add_argument("--out", metavar="DIR", default=".",
                   help="where the checkpoint and the loss plot go (default: the current directory)")
    p.add_argument("--quick", action="store_true", help="a tiny run of a few seconds (for tests)")
    args = p.parse_args(argv)
    if args.quick:
        small = dict(epochs=1, seq_len=32, batch=16, length=80)
        if not (args.resume or args.sample_only):  # a checkpoint's model keeps its own size
            small["hidden"] = 32
        for name, value in small.items():
            if getattr(args, name) in (None, p.get_default(name)):
                setattr(args, name, value)
    for name in ("hidden", "layers", "seq_len", "batch", "length"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.proj is not None:
        if args.proj < 0:
            p.error("--proj must be at least 0 (0: no projections)")
        if args.proj and args.cell not in (None, "lstm"):
            p.error(f"--proj: projections are an LSTM's, not --cell {args.cell}'s")
        if args.proj and args.proj >= (args.hidden or MODEL_DEFAULTS["hidden"]) and not args.resume:
            p.error(f"--proj {args.proj} must be smaller than the hidden size "
                    f"({args.hidden or MODEL_DEFAULTS['hidden']})")
    if args.epochs < 0:
        p.error("--epochs must be at least 0")
    for name in REGULARISERS:
        if not 0 <= getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be in [0, 1)")
    if args.temperature < 0 or not math.isfinite(args.temperature):
        p.error("--temperature must be a finite number >= 0")
    try:
        text_encoding = codecs.lookup(args.encoding)._is_text_encoding
    except LookupError:
        text_encoding = False
    if not text_encoding:
        p.error(f"--encoding {args.encoding}: not a text encoding Python knows (for example utf-8, latin-1, cp1252)")
    if args.encoding != p.get_default("encoding") and not args.text:
        p.error("--encoding applies to --text FILE only (the built-in corpus is text already)")
    return args


# ---- model -------------------------------------------------------------------------------------

def regularisers(args):
    """The recurrent layer's regularisers the command line asks for (training only)."""
    return {name: getattr(args, name) for name in REGULARISERS}


class CharModel:
    """Recurrent stack + Linear head over one-hot characters of `vocab`."""

    def __init__(self, vocab, cell, hidden, layers, seed, proj=0, **regularisers):
        self.vocab, self.cell = vocab, cell
        self.index = {ch: i for i, ch in enumerate(vocab)}
        V = len(vocab)
        self.rnn = CELLS[cell][0](V, hidden, num_layers=layers, seed=seed, **({"proj_size": proj} if proj else {}),
                                  **regularisers)
        self.head = rnnfast.Linear(proj or hidden, V, seed=seed + 1)

    @property
    def modules(self):
        return [self.rnn, self.head]

    def encode(self, text):
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(f"characters the model does not know: {''.join(unknown)[:40]!r}")
        return np.fromiter((self.index[ch] for ch in text), dtype=np.int64, count=len(text))

    def metadata(self, epochs_done):
        return {"vocab": self.vocab, "cell": self.cell, "hidden": self.rnn.hidden_size,
                "layers": self.rnn.num_layers, "proj": self.rnn.proj_size, "epochs_done": epochs_done}

    def stream_loss(self, x, y, precision="float32"):
        """Mean cross-entropy (nats per character) of an eval-mode pass over one-hot streams x, targets y,
        with the recurrent weights in `precision`."""
        self.rnn.eval(), self.head.eval()
        rnn = self.rnn if precision == "float32" else rnnfast.quantize(self.rnn, precision)
        logits = self.head(rnn(x)[0])
        self.rnn.train(), self.head.train()
        return rnnfast.cross_entropy(logits, y)[0]

    def check_prompt(self, prompt):
        """The prompt to use: the given one (ValueError if it has unknown characters) or the default."""
        if prompt is not None:
            try:
                self.encode(prompt)
            except ValueError as exc:
                raise ValueError(f"--prompt {prompt!r}: {exc}") from None
            return prompt
        return "The " if set("The ") <= set(self.index) else ""

    def sample(self, prompt, length, temperature, rng, precision="float32"):
        """prompt + `length` generated characters, one step at a time through single-step cells (with
        their weights in `precision`), or with projections or layer norms (which the cells do not
        have) through the layer itself (likewise), one step a call."""
        rnn, H = self.rnn, self.rnn.hidden_size
        by_layer = bool(rnn.proj_size) or CELLS[self.cell][1] is None
        # The layer at `precision`: with reduced precision an eval copy, the model's own left alone.
        whole = rnnfast.quantize(rnn, precision) if by_layer and precision != "float32" else rnn
        state = rnn.state_dict()
        kwargs = {"nonlinearity": rnn.nonlinearity} if self.cell == "rnn" else {}
        kwargs["zoneout"] = rnn.zoneout  # the layer's eval: h = p h_prev + (1 - p) h~
        cells = []
        for layer in range(0 if by_layer else rnn.num_layers):
            cell = CELLS[self.cell][1](rnn.input_size if layer == 0 else H, H, **kwargs).eval()
            cell.load_state_dict({k: state[f"{k}_l{layer}"] for k in cell.state_dict()})
            cells.append(cell if precision == "float32" else rnnfast.quantize(cell, precision))
        states = [None] * max(len(cells), 1)  # each cell's state, or the layer's
        was_training = rnn.training
        if by_layer:
            rnn.eval()

        def step(x):  # one character through the recurrent layers: the top layer's h (1, features)
            if by_layer:
                y, states[0] = whole(x[None], states[0])
                return y[0]
            for layer, cell in enumerate(cells):
                states[layer] = cell(x, states[layer])
                x = states[layer][0] if self.cell == "lstm" else states[layer]
            return x

        head = self.head.train(False)
        out, V = [], len(self.vocab)
        ids = list(self.encode(prompt)) if prompt else [int(rng.integers(V))]
        for i in range(len(ids) - 1 + length):
            x = step(rnnfast.one_hot(np.array([ids[i] if i < len(ids) else out[-1]]), V))
            if i < len(ids) - 1:
                continue
            logits = head(x)[0].astype(np.float64)
            if temperature == 0:
                out.append(int(np.argmax(logits)))
            else:
                z = logits / temperature
                p = np.exp(z - z.max())
                out.append(int(rng.choice(V, p=p / p.sum())))
        head.train()
        rnn.train(was_training)
        return "".join(self.vocab[i] for i in ids) + "".join(self.vocab[i] for i in out)


# ---- training ----------------------------------------------------------------------------------

class Progress:
    """The training's progress bar: tqdm's on a terminal where tqdm is installed (the `examples`
    extra); else plain stdout, redrawn in place on a terminal, a line per tenth otherwise (logs)."""

    def __init__(self, total, label, width=28, stream=sys.stdout):
        self.total, self.label, self.width, self.stream = total, label, width, stream
        self.tty = stream.isatty()
        self.start = time.perf_counter()
        self.done, self.chars, self.last_tenth = 0, 0, 0
        self.tqdm = None
        if self.tty:
            try:
                from tqdm import tqdm
                self.tqdm = tqdm(total=total, desc=label, unit="chunk", file=stream, leave=True)
            except ImportError:
                pass

    def update(self, chars, loss):
        self.done += 1
        self.chars += chars
        rate = self.chars / max(time.perf_counter() - self.start, 1e-9)
        if self.tqdm is not None:
            self.tqdm.set_postfix_str(f"loss {loss:.3f}, {rate:,.0f} chars/s", refresh=False)
            self.tqdm.update(1)
            if self.done == self.total:
                self.tqdm.close()
            return
        frac = self.done / self.total
        bar = "#" * int(frac * self.width) + "." * (self.width - int(frac * self.width))
        line = f"{self.label} [{bar}] {100 * frac:3.0f}%  loss {loss:.3f}  {rate:,.0f} chars/s"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if self.done == self.total else ""))
            self.stream.flush()
        elif int(frac * 10) > self.last_tenth or self.done == self.total:
            self.last_tenth = int(frac * 10)
            print(line, file=self.stream, flush=True)


def streams(ids, batch):
    """ids -> (x ids (L, B), targets (L, B)): B parallel streams, each reading its own slice of the text."""
    L = (len(ids) - 1) // batch
    if L < 1:
        raise ValueError(f"the text is too short for {batch} streams ({len(ids)} characters)")
    return ids[: L * batch].reshape(batch, L).T, ids[1: L * batch + 1].reshape(batch, L).T


def train_epoch(model, opt, x, y, seq_len, clip, label, history, chunk_chars):
    """One pass over the streams, an Adam step per chunk; appends each chunk's loss and size."""
    n_chunks = -(-x.shape[0] // seq_len)
    bar = Progress(n_chunks, label)
    head, rnn = model.head, model.rnn
    chunk_loss = {}

    def loss_fn(out, t0, t1):
        loss, dlogits = rnnfast.cross_entropy(head(out), y[t0:t1])
        chunk_loss["value"] = loss
        return loss, head.backward(dlogits)

    def after_chunk(t0, t1):
        norm = rnnfast.clip_grad_norm(model.modules, clip)
        if math.isfinite(norm):
            opt.step()
        opt.zero_grad()
        history.append(chunk_loss["value"])
        chunk_chars.append((t1 - t0) * x.shape[1])
        bar.update(chunk_chars[-1], chunk_loss["value"])

    opt.zero_grad()
    rnnfast.tbptt(rnn, x, seq_len, loss_fn, after_chunk=after_chunk)


def show(title, text, temperature):
    print(f"\n{title} (temperature {temperature}):")
    print("  | " + text.replace("\n", "\n  | ") + "\n")


def save_plot(history, val_points, path):
    """The training loss per chunk (and its running mean) and the validation loss per epoch, as a PNG."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    h = np.asarray(history)
    k = max(1, len(h) // 50)
    smooth = np.convolve(h, np.ones(k) / k, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(h, color="0.8", lw=0.8, label="training chunk")
    ax.plot(np.arange(k - 1, len(h)), smooth, color="C0", label=f"running mean ({k} chunks)")
    if val_points:
        ax.plot(*zip(*val_points), "o-", color="C3", label="validation")
    ax.set_xlabel("training chunk (one Adam step each)")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.set_title("rnnfast character-level language model")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def read_text(args):
    """(text, where it came from). A file that does not decode in --encoding is an error that names
    the first offending byte; nothing is replaced silently."""
    if not args.text:
        return (corpus.generate(300, seed=0) if args.quick else corpus.default_text()), "the built-in corpus (rnnfast.corpus)"
    with open(args.text, "rb") as f:
        data = f.read()
    try:  # line ends as text mode reads them: \r\n and \r become \n
        return data.decode(args.encoding).replace("\r\n", "\n").replace("\r", "\n"), args.text
    except UnicodeDecodeError as exc:
        bad = data[exc.start:exc.end]
        raise ValueError(f"{args.text} is not valid {args.encoding}: byte 0x{bad[0]:02x} at offset {exc.start} "
                         f"({exc.reason}); if the file uses another encoding, name it with --encoding "
                         "(for example --encoding latin-1)") from None


def check_text(text, source, args):
    """ValueError when the text cannot make training and validation streams; a hint on stdout when
    it is much smaller than the built-in corpus and --epochs was left at its default."""
    if not text:
        raise ValueError(f"{source} is empty: there is nothing to train on")
    def enough(n):  # as prepare() splits: a step for every training stream, two held-out characters
        return (training_chars(n) - 1) // args.batch >= 1 and n - training_chars(n) >= 2

    need = next(n for n in range(2, 100 * args.batch + 100) if enough(n) and enough(n + 1))
    if not enough(len(text)):
        raise ValueError(f"{source} has {len(text)} characters: too short to train {args.batch} streams "
                         f"(--batch) and hold a tenth out for validation; it needs at least {need} "
                         "(or pass a smaller --batch)")
    def steps(chars):  # Adam steps of one epoch: chunks of --seq-len over each stream
        return -(-((training_chars(chars) - 1) // args.batch) // args.seq_len)

    built_in = len(corpus.default_text())
    if args.text and len(text) * 10 < built_in and args.epochs == EPOCHS:
        suggest = min(1000, math.ceil(HINT_STEPS / steps(len(text)) / 10) * 10)
        print(f"hint: this text has {len(text):,} characters, a tenth of the built-in corpus or less: {EPOCHS} epochs "
              f"of it are {EPOCHS * steps(len(text))} Adam steps (the built-in corpus gets {EPOCHS * steps(built_in):,}); "
              f"for readable samples try --epochs {suggest} or more")


def from_checkpoint(path, args):
    """(model with the checkpoint's shape, epochs it was trained); the weights are loaded later.
    ValueError when --cell, --hidden or --layers ask for another model than the checkpoint holds."""
    meta = rnnfast.checkpoint.read_metadata(path)
    try:
        shape = {"cell": str(meta["cell"]), "hidden": int(meta["hidden"]), "layers": int(meta["layers"]),
                 "proj": int(meta.get("proj", 0))}  # checkpoints from before --proj have none
        vocab = str(meta["vocab"])
    except KeyError as exc:
        raise ValueError(f"not a checkpoint of this program (no {exc} in its metadata)") from None
    for name, value in shape.items():
        asked = getattr(args, name)
        if asked is not None and asked != value:
            raise ValueError(f"--{name} {asked} conflicts with the checkpoint {path}, whose model has {name} "
                             f"{value}: leave --{name} out to continue it, or train a new model without "
                             f"{'--resume' if args.resume else '--sample-only'}")
    model = CharModel(vocab, shape["cell"], shape["hidden"], shape["layers"], args.seed, shape["proj"],
                      **regularisers(args))
    return model, int(meta.get("epochs_done", 0))


def training_chars(n):
    """How many of a text's n characters train; the rest (a tenth) is held out for validation."""
    return int(n * 0.9)


def prepare(model, text, args):
    """One-hot training and validation streams (the last 10% of the text is held out)."""
    try:
        ids = model.encode(text)
    except ValueError as exc:
        raise ValueError(f"the text does not fit the checkpoint's model: {exc}") from None
    split = training_chars(len(ids))
    x_ids, y_train = streams(ids[:split], args.batch)
    vx_ids, y_val = streams(ids[split:], min(args.batch, max(1, (len(ids) - split - 1) // args.seq_len)))
    V = len(model.vocab)
    return rnnfast.one_hot(x_ids, V), y_train, rnnfast.one_hot(vx_ids, V), y_val


def train(model, opt, data, args, epochs_done, resumed):
    x_train, y_train, x_val, y_val = data
    V, rng = len(model.vocab), np.random.default_rng(args.seed)
    show("sample from the checkpoint" if resumed else "sample before training",
         model.sample(args.prompt, args.length, args.temperature, rng), args.temperature)
    first_val = model.stream_loss(x_val, y_val)
    print(f"validation loss {first_val:.3f} nats/char (uniform guessing: {math.log(V):.3f})")
    history, chunk_chars, val_points = [], [], [(0, first_val)]
    start, completed = time.perf_counter(), 0
    try:
        for epoch in range(args.epochs):
            label = f"epoch {epochs_done + epoch + 1}/{epochs_done + args.epochs}"
            train_epoch(model, opt, x_train, y_train, args.seq_len, args.clip, label, history, chunk_chars)
            val = model.stream_loss(x_val, y_val)
            val_points.append((len(history), val))
            completed += 1
            print(f"  validation loss {val:.3f} nats/char ({val / math.log(2):.3f} bits/char)")
    except KeyboardInterrupt:  # keep what was learnt: sample and save as after a full run
        print("\ninterrupted: stopping here")
        if len(history) > val_points[-1][0]:
            val_points.append((len(history), model.stream_loss(x_val, y_val)))
    seconds = time.perf_counter() - start
    chars = int(np.sum(chunk_chars))
    print(f"\ntrained {chars:,} characters in {seconds:.1f} s ({chars / max(seconds, 1e-9):,.0f} chars/s); "
          f"validation loss {first_val:.3f} -> {val_points[-1][1]:.3f} nats/char")
    if args.precision != "float32":
        quantized = model.stream_loss(x_val, y_val, args.precision)
        print(f"validation loss with {args.precision} weights {quantized:.3f} nats/char "
              f"({(quantized / val_points[-1][1] - 1) * 100:+.2f}% against float32's)")
    show("sample after training" + ("" if args.precision == "float32" else f" ({args.precision})"),
         model.sample(args.prompt, args.length, args.temperature, rng, args.precision), args.temperature)
    return history, val_points, completed


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, CHECKPOINT)
    print(f"rnnfast {rnnfast.__version__}: isa={rnnfast.isa()} threads={rnnfast.get_num_threads()}")
    resume = args.resume or (ckpt_path if args.sample_only else None)
    try:
        if resume:
            model, epochs_done = from_checkpoint(resume, args)
            print(f"checkpoint {resume}: {model.cell}, hidden {model.rnn.hidden_size}, "
                  f"{model.rnn.num_layers} layer(s), {epochs_done} epoch(s) trained")
        if args.sample_only:
            rnnfast.load(resume, *model.modules)
            args.prompt = model.check_prompt(args.prompt)
            show("sample" + ("" if args.precision == "float32" else f" ({args.precision})"),
                 model.sample(args.prompt, args.length, args.temperature, np.random.default_rng(args.seed),
                              args.precision), args.temperature)
            return 0
        text, source = read_text(args)
        check_text(text, source, args)
        if not resume:
            shape = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in MODEL_DEFAULTS.items()}
            model, epochs_done = CharModel("".join(sorted(set(text))), seed=args.seed, **regularisers(args),
                                           **shape), 0
        args.prompt = model.check_prompt(args.prompt)
        data = prepare(model, text, args)
        opt = rnnfast.optim.Adam(model.modules, lr=args.lr)
        if resume:
            rnnfast.load(resume, *model.modules, optimizer=opt)
            opt.lr = args.lr  # the optimiser's moments carry on; the learning rate is this run's
    except (OSError, ValueError) as exc:  # a missing or damaged file, a text or prompt that does not fit
        print(f"error: {exc}", file=sys.stderr)
        return 2

    V = len(model.vocab)
    print(f"text: {source}, {len(text):,} characters, {V} distinct; {len(text) - training_chars(len(text)):,} "
          f"held out for validation")
    proj = f" (projected to {model.rnn.proj_size})" if model.rnn.proj_size else ""
    print(f"model: {model.cell.upper()} {V} -> {model.rnn.hidden_size}{proj} x {model.rnn.num_layers} layer(s) -> "
          f"Linear -> "
          f"{V}; {sum(p.size for m in model.modules for p in m.parameters().values()):,} parameters")
    print(f"training: {args.epochs} epoch(s), {args.batch} streams x chunks of {args.seq_len} steps, Adam lr {args.lr}"
          + "".join(f", {what} {getattr(args, own)}" for own, what in REGULARISERS.items() if getattr(args, own)))
    history, val_points, completed = train(model, opt, data, args, epochs_done, bool(resume))

    if not history:  # nothing trained: an earlier checkpoint in --out stays as it was
        print(f"checkpoint: none written (nothing was trained; --epochs {args.epochs})")
        return 0
    rnnfast.save(ckpt_path, *model.modules, optimizer=opt, metadata=model.metadata(epochs_done + completed))
    print(f"checkpoint: {ckpt_path} (continue with --resume {ckpt_path}, or --sample-only)")
    plot_path = os.path.join(args.out, PLOT)
    if history and save_plot(history, val_points, plot_path):
        print(f"loss curve: {plot_path}")
    elif history:
        print("loss curve: skipped (pip install matplotlib to get a PNG)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
