"""python -m models.train: train the derivation's network on real data and check its gradients.

Trains a TwoLayerNet (the network of models/DERIVATION.md) with mini-batches, shows
the progress, prints the test accuracy and a gradient-check table (tape vs
closed form vs finite differences on one batch), and writes to --out:

    params.npz     the trained parameters (TwoLayerNet.load reads them back)
    optimizer.npz  the optimizer's state (opt.state_dict()), which --resume continues from
    loss.png       training loss and accuracy per epoch
    graph.svg      the computation graph of one batch with its gradients (viz/)

After the check it prints the closed form the tape derived for the network
(``tape.closed_form``): its backward pass as the derivation's equations and
as the numpy function it generated. ``--compile`` trains with that generated
code instead of recording every step.

The defaults reach 98.89% test accuracy on the digits (355 of 359) after 1,350
steps. The same --seed gives bit-identical results.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

import microtape as mt
from microtape._install import missing_package
from microtape.files import open_atomic

from . import data
from .checkpoint import CheckpointError, load_arrays, save_arrays
from .fit import History, TrainingError, fit
from .gradient_check import EXACT_TOL, GradientCheck, check_gradients
from .two_layer import TwoLayerNet

DEFAULT_EPOCHS = {"digits": 30, "spirals": 200}
DEFAULT_LR = {"sgd": 0.5, "adam": 0.01}
DEFAULT_MOMENTUM = 0.9
CHECK_BATCH = 16  # examples in the gradient check; finite differences cost 2 passes per element


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        """One line instead of argparse's usage block: what is wrong and where to look."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0 or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog or _prog(),
        description="Train the derivation's two-layer network (sigmoid hidden layer, softmax "
                    "cross-entropy) on the tape, check its gradients, and save the results.",
    )
    parser.add_argument("--dataset", choices=["digits", "spirals"], default="digits",
                        help="digits: scikit-learn's 8x8 handwritten digits; spirals: three "
                             "interleaved spiral arms (default: digits)")
    parser.add_argument("--hidden", type=_positive(int), default=64, metavar="N",
                        help="hidden units (default: 64)")
    parser.add_argument("--epochs", type=_positive(int), default=None, metavar="N",
                        help=f"passes over the training set (default: {DEFAULT_EPOCHS['digits']} "
                             f"for digits, {DEFAULT_EPOCHS['spirals']} for spirals)")
    parser.add_argument("--batch-size", type=_positive(int), default=32, metavar="N",
                        help="examples per step (default: 32)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                        help="sgd (with momentum) or adam (default: sgd)")
    parser.add_argument("--lr", type=_positive(float), default=None,
                        help=f"learning rate (default: {DEFAULT_LR['sgd']} for sgd, "
                             f"{DEFAULT_LR['adam']} for adam)")
    parser.add_argument("--momentum", type=_fraction, default=None,
                        help=f"sgd momentum, in [0, 1) (default: {DEFAULT_MOMENTUM})")
    parser.add_argument("--seed", type=_seed, default=0,
                        help="seed for the initial weights and the batch order; the data split "
                             "is fixed (default: 0)")
    _add_run_flags(parser)
    return parser


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The flags about how the run goes and where it writes, after those of the training."""
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                        help="the parameters' and the data's dtype while training; the gradient "
                             "check runs in float64 either way (default: float64)")
    parser.add_argument("--out", type=Path, default=Path("out"), metavar="DIR",
                        help="folder for params.npz, optimizer.npz, loss.png and graph.svg "
                             "(default: ./out)")
    parser.add_argument("--resume", action="store_true",
                        help="start from params.npz and optimizer.npz in --out, written by an "
                             "earlier run with the same --dataset, --hidden, --optimizer and "
                             "--dtype, and train --epochs more")
    parser.add_argument("--compile", action="store_true",
                        help="train with the closed form the tape writes for the network (recorded "
                             "once per batch shape, then plain generated numpy) instead of a tape "
                             "per step")
    parser.add_argument("--detect-anomaly", action="store_true",
                        help="check every op and VJP for NaN or Inf (mt.detect_anomaly); on the "
                             "first, draw it to anomaly.svg in --out and stop")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the results: the accuracy, the gradient check's verdict "
                             "and the files written")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0, or 1 with one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except _BadFlag as e:
        parser.error(str(e))
    except _Failure as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"{parser.prog}: error: out of memory; try a smaller --hidden or --batch-size",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (| head); stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


class _Failure(Exception):
    """An error for the user, printed as one line."""


class _BadFlag(_Failure):
    """A flag argparse accepted but this machine cannot: reported as a bad flag."""


def run(args: argparse.Namespace) -> int:
    """Train, report, check the gradients and write the files; 1 if the tape is wrong."""
    _check_flags(args)
    epochs = args.epochs or DEFAULT_EPOCHS[args.dataset]
    lr = args.lr or DEFAULT_LR[args.optimizer]
    x_train, y_train, x_test, y_test = _load(args.dataset)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    _check_memory(args, x_train.shape[1], n_classes, max(len(x_train), len(x_test)))
    out = _prepare_out(args.out)

    net = TwoLayerNet(x_train.shape[1], args.hidden, n_classes, seed=args.seed, dtype=args.dtype)
    optimizer = _optimizer(net, args, lr)
    say = (lambda *lines: None) if args.quiet else print  # --quiet: the results only
    say(f"{args.dataset}: {len(x_train)} training and {len(x_test)} test examples, "
        f"{x_train.shape[1]} features, {n_classes} classes")
    say(f"{net}, {optimizer}, batch size {args.batch_size}, {epochs} epochs, seed {args.seed}")
    if args.resume:
        _resume(net, optimizer, out)
        say(f"resumed from {out / 'params.npz'} and {out / 'optimizer.npz'} after "
            f"{optimizer.steps} steps")
    history = _train(net, optimizer, args, epochs, (x_train, y_train), (x_test, y_test))

    batch = (x_train[:CHECK_BATCH], y_train[:CHECK_BATCH])
    check = check_gradients(net, *batch)
    if args.quiet:
        print(check.summary())
    else:
        print(f"\n{check}\n\n{_closed_form(net, *batch)}\n")
    written = [_write(out / "params.npz", net.save),
               _write(out / "optimizer.npz", lambda path: save_arrays(path, optimizer.state_dict()))]
    plotted = _plot(history, out / "loss.png", args.dataset)
    if plotted:
        written.append(plotted)
    written.append(_graph(net, *batch, out / "graph.svg"))
    print("wrote " + ", ".join(str(p) for p in written))
    return _verdict(check)


def _check_flags(args: argparse.Namespace) -> None:
    """The flags that argparse takes one by one but that do not go together."""
    if args.compile and args.detect_anomaly:
        raise _BadFlag("argument --detect-anomaly: it checks the tape's ops, and --compile trains "
                       "without a tape; drop one of them")
    if args.momentum is not None and args.optimizer != "sgd":
        raise _BadFlag(f"argument --momentum: it is sgd's, and --optimizer {args.optimizer} has "
                       f"none; drop it, or train with --optimizer sgd")


def _optimizer(net: TwoLayerNet, args: argparse.Namespace, lr: float) -> mt.optim.Optimizer:
    if args.optimizer == "sgd":
        momentum = DEFAULT_MOMENTUM if args.momentum is None else args.momentum
        return mt.optim.SGD(net.params, lr=lr, momentum=momentum)
    return mt.optim.Adam(net.params, lr=lr)


def _train(net: TwoLayerNet, optimizer: mt.optim.Optimizer, args: argparse.Namespace,
           epochs: int, train: tuple[np.ndarray, np.ndarray],
           test: tuple[np.ndarray, np.ndarray]) -> History:
    """Fit ``net`` with a progress bar, then print the accuracies it reached."""
    progress = _Progress(epochs, quiet=args.quiet)
    try:
        history = fit(net, optimizer, *train, epochs=epochs, batch_size=args.batch_size,
                      seed=args.seed, test=test, on_epoch=progress.update,
                      compile=args.compile, detect_anomaly=args.detect_anomaly)
    except TrainingError as e:
        raise _Failure(f"{e.what}; try a smaller --lr (now {e.lr:g})") from None
    except mt.AnomalyError as e:
        raise _Failure(_anomaly(e, args.out)) from None
    finally:
        progress.close()
    n_test = len(test[0])
    correct = int(round(history.test_accuracy[-1] * n_test))
    print(f"test accuracy: {history.test_accuracy[-1]:.2%} ({correct}/{n_test}), "
          f"train accuracy: {history.train_accuracy[-1]:.2%}, "
          f"{history.steps} steps in {history.seconds:.2f} s")
    return history


def _verdict(check: GradientCheck) -> int:
    """The exit status: 1 when the tape disagrees with the closed form, else 0 (with a
    note when only finite differences disagree)."""
    if any(row.tape_vs_closed > EXACT_TOL for row in check.rows):
        print(f"{_prog()}: error: gradient check failed: the tape disagrees with the closed "
              f"form (rows marked NO)", file=sys.stderr)
        return 1
    if not check.passed:
        print("note: finite differences disagree with the tape and the closed form, which agree "
              "with each other (rows marked NO): the loss is too badly scaled for eps=1e-6, as "
              "after a too-large --lr", file=sys.stderr)
    return 0


# -- the pieces ---------------------------------------------------------------

def _prog() -> str:
    return "microtape-train" if Path(sys.argv[0]).name == "microtape-train" else "python -m models.train"


def _resume(net: TwoLayerNet, optimizer: mt.optim.Optimizer, out: Path) -> None:
    """Put the parameters and the optimizer's state saved in ``out`` into ``net`` and ``optimizer``."""
    try:
        saved = TwoLayerNet.load(out / "params.npz")
        if saved.sizes != net.sizes or saved.dtype != net.dtype:
            raise CheckpointError(f"{str(out / 'params.npz')!r} holds {saved}, and these flags make "
                                  f"{net}; give the flags of the run that wrote it")
        state = load_arrays(out / "optimizer.npz")
        optimizer.load_state_dict(state)
    except (OSError, CheckpointError, mt.InputError, mt.ShapeError) as e:
        raise _Failure(f"--resume: {e}") from None
    for name, p in net.params.items():
        p.value[...] = saved.params[name].value  # in place: the optimizer holds these Tensors


def _prepare_out(out: Path) -> Path:
    """Create --out and prove it writable before spending time on training."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except FileExistsError:
        raise _Failure(f"--out {str(out)!r} exists and is not a folder") from None
    except OSError as e:
        raise _Failure(f"cannot write to --out {str(out)!r}: {e.strerror or e}") from None
    return out


def _load(dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if dataset == "digits":
        try:
            return data.load_digits(test_fraction=0.2, seed=0)
        except ImportError as e:
            raise _Failure(str(e)) from None
    x, y = data.spirals(n_per_class=200, n_classes=3, seed=0)
    return data.stratified_split(x, y, test_fraction=0.2, seed=0)


def _check_memory(args: argparse.Namespace, n_in: int, n_out: int, n_rows: int) -> None:
    """Refuse a --hidden too large for this machine before allocating anything."""
    limit = _memory_limit()
    if limit is None:
        return
    params = n_in * args.hidden + args.hidden + args.hidden * n_out + n_out
    state = 2 if args.optimizer == "adam" else 1  # moment buffers per parameter
    # values, gradients and optimizer state, plus the hidden layer of a whole-set accuracy pass
    need = np.dtype(args.dtype).itemsize * ((2 + state) * params + 3 * n_rows * args.hidden)
    if need > limit:
        raise _BadFlag(f"argument --hidden: {args.hidden} hidden units need about {_bytes(need)} "
                       f"of memory to train, and this machine has {_bytes(limit)}")


def _memory_limit() -> int | None:
    """This machine's memory, or the container's limit if lower; None if unknown."""
    try:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    try:
        cgroup = Path("/sys/fs/cgroup/memory.max").read_text().strip()  # cgroup v2
    except OSError:
        cgroup = ""
    return min(limit, int(cgroup)) if cgroup.isdigit() else limit


def _bytes(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def _write(path: Path, save) -> Path:
    try:
        return save(path)
    except OSError as e:
        raise _Failure(f"cannot write {str(path)!r}: {e.strerror or e}") from None


class _Progress:
    """A tqdm bar on a terminal; on a log (or without tqdm), about ten plain lines."""

    def __init__(self, epochs: int, quiet: bool) -> None:
        self.epochs, self.quiet, self.bar = epochs, quiet, None
        self.every = max(1, epochs // 10)
        if quiet or not sys.stderr.isatty():
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=epochs, desc="training", unit="epoch", file=sys.stderr)

    def update(self, epoch: int, history: History) -> None:
        status = (f"loss {history.loss[-1]:.4f}, train {history.train_accuracy[-1]:.1%}, "
                  f"test {history.test_accuracy[-1]:.1%}")
        if self.bar is not None:
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.update(1)
        elif not self.quiet and (epoch % self.every == 0 or epoch == self.epochs):
            print(f"epoch {epoch:>{len(str(self.epochs))}}/{self.epochs}: {status}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _closed_form(net: TwoLayerNet, x: np.ndarray, labels: np.ndarray) -> str:
    """The closed form the tape writes for the checked batch: equations, then the numpy code."""
    with mt.Tape() as tape:
        loss = net.loss(x, labels)
    cf = tape.closed_form(loss, net.params)
    equations = [line[3:-1] for line in cf.equations.splitlines()]  # "- `...`" -> "..."
    return "\n".join([
        f"The closed form the tape derived for this batch (tape.closed_form(J, params)), "
        f"the derivation's batched formulas with N = {len(x)}:", "",
        *(f"    {e}" for e in equations), "",
        "and the numpy function it wrote (the code --compile trains with):", "",
        *(f"    {line}" if line else "" for line in cf.source.splitlines())])


def _graph(net: TwoLayerNet, x: np.ndarray, labels: np.ndarray, path: Path) -> Path:
    """graph.svg: one batch's tape with every value and gradient (hover for the full arrays)."""
    import viz

    x = np.asarray(x, dtype=net.dtype)   # the very array the tape records, so names= finds it
    with mt.Tape() as tape:
        loss = net.loss(x, labels)
    try:
        return viz.render(tape, path, loss, params=net.params, names={"x": x, "labels": labels})
    except viz.GraphvizNotFoundError as e:
        print(f"graph.svg skipped: {e}", file=sys.stderr)
        return path.with_suffix(".dot")
    except OSError as e:
        raise _Failure(f"cannot write {str(path)!r}: {e.strerror or e}") from None


def _anomaly(err: mt.AnomalyError, out: Path) -> str:
    """The error's message, its drawing written to ``out/anomaly.svg`` instead of the hint."""
    import viz

    message = "\n".join(line for line in str(err).splitlines()
                        if not line.startswith("  to draw it:"))
    try:
        return f"{message}\n  drawn in {viz.render_anomaly(err, out / 'anomaly.svg')}"
    except viz.GraphvizNotFoundError as e:
        return f"{message}\n  {e}"


def _plot(history: History, path: Path, dataset: str) -> Path | None:
    """loss.png: the loss and both accuracies per epoch; skipped (with a note) without matplotlib."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
    except ImportError:
        hint = missing_package("matplotlib", "pip install 'microtape[examples]'")
        print(f"loss.png skipped: {hint}", file=sys.stderr)
        return None
    epochs = np.arange(1, len(history.loss) + 1)
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, history.loss, color="tab:blue")
    ax_loss.set(xlabel="epoch", ylabel="mean training loss J", yscale="log", title="loss")
    ax_acc.plot(epochs, history.train_accuracy, label="train", color="tab:blue")
    ax_acc.plot(epochs, history.test_accuracy, label="test", color="tab:orange")
    ax_acc.set(xlabel="epoch", ylabel="accuracy",
               title=f"accuracy (test {history.test_accuracy[-1]:.2%} at the end)")
    ax_acc.legend(loc="lower right")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.suptitle(f"TwoLayerNet on {dataset}")

    def save(target: Path) -> Path:
        with open_atomic(target) as f:
            fig.savefig(f, format="png", dpi=110)
        return target

    return _write(path, save)


if __name__ == "__main__":
    sys.exit(main())
