#!/usr/bin/env python3
"""A toy training script reporting to sweepd with the Python client (no ML libraries needed).

    export SWEEPD_SOCKET=$PWD/var/sweepd.sock        # as printed by ./scripts/run.sh
    python3 examples/train.py --run-id ab12cd34 --sweep s1 --lr 0.01 --epochs 20
    python3 examples/train.py --lr 5                  # diverges: reported as failed
    python3 examples/train.py --crash                 # raises: failed, "RuntimeError: ..."
    build/sweepctl observations --sweep s1

It "trains" y = 3x + 1 by gradient descent with the suggested learning rate, heartbeats with the
epoch as progress, and reports its runtime as the cost and the objective

    objective = -(final loss)          higher is better: configure the optimizer to MAXIMIZE it

(sweepd stores the objective as given; the optimizer's own configuration decides its direction).
A learning rate that makes training diverge (the loss is not finite, or grows past 100 times its
first value) is reported with run.fail("diverged: ...") and the script exits with status 1.

With --wandb (and wandb installed), the run is a W&B run: its id, entity and project are used for
sweepd, and the protein.* summary keys are also set in the run's own summary. Without sweepd
running, the script trains and exits normally: the client logs a warning and spools the report,
delivered by the next run on the same socket (or flush_spool()).
"""

import argparse
import logging
import math
import os
import random
import sys
import time

try:
    from sweepd_client import SweepRun
except ImportError:  # not installed (pip install clients/python): use the repository's copy
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))
    from sweepd_client import SweepRun

DIVERGENCE_FACTOR = 100.0  # a loss this many times its first value means training diverged


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-id", help="the run id (default: the W&B run's, else a random one)")
    p.add_argument("--sweep", default="example", help="sweep name (default: example)")
    p.add_argument("--lr", type=float, default=0.3, help="learning rate (the hyperparameter)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--step-seconds", type=float, default=0.05, help="pretend each epoch takes this long")
    p.add_argument("--crash", action="store_true", help="raise an exception halfway through")
    p.add_argument("--wandb", action="store_true", help="log to W&B (needs the wandb package)")
    p.add_argument("--socket", help="sweepd socket (default: $SWEEPD_SOCKET, then /run/sweepd/sweepd.sock)")
    args = p.parse_args()
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    return args


def train(args, run, log_metrics):
    """Returns (final loss, None), or (last loss, why) when training diverged."""
    rng = random.Random(0)
    data = [(x, 3.0 * x + 1.0) for x in (rng.uniform(-1, 1) for _ in range(64))]
    w = b = 0.0
    loss = first_loss = None
    for epoch in range(args.epochs):
        grad_w = grad_b = loss = 0.0
        for x, y in data:
            err = w * x + b - y
            loss += err * err / len(data)
            grad_w += 2 * err * x / len(data)
            grad_b += 2 * err / len(data)
        if first_loss is None:
            first_loss = loss
        if not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * max(first_loss, 1e-12):
            return loss, "diverged: loss %.3g at epoch %d (first %.3g, lr=%g)" % (
                loss, epoch, first_loss, args.lr,
            )
        w -= args.lr * grad_w
        b -= args.lr * grad_b
        run.set_progress(epoch)  # sent with the next background heartbeat
        log_metrics({"epoch": epoch, "loss": loss})
        if args.crash and epoch == args.epochs // 2:
            raise RuntimeError("simulated crash at epoch %d" % epoch)
        time.sleep(args.step_seconds)
    return loss, None


def sweepd_answer(run, state):
    """What became of the final report: taken, refused, or waiting for sweepd."""
    if state is not None:
        return "sweepd says %s" % state
    if run.last_error is not None:
        return "sweepd refused: %s" % run.last_error.code
    if run.spooled:
        return "sweepd could not be reached (report spooled to %s)" % run.spool_path
    return "sweepd could not be reached (report not spooled: retried while this process lives)"


def main():
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    suggestion = {"lr": args.lr, "epochs": args.epochs}

    log_metrics = lambda metrics: None  # noqa: E731
    if args.wandb:
        import wandb  # optional: only with --wandb

        wandb.init(project=os.environ.get("WANDB_PROJECT", "sweepd-example"), config=suggestion)
        log_metrics = wandb.log
        run_id = args.run_id  # None: SweepRun takes wandb.run.id
    else:
        run_id = args.run_id or "%08x" % random.SystemRandom().getrandbits(32)

    started = time.monotonic()
    with SweepRun(run_id, sweep=args.sweep, suggestion=suggestion, socket_path=args.socket) as run:
        logging.info("run %s: lr=%g, reporting to %s", run.run_id, args.lr, run.socket_path)
        loss, diverged = train(args, run, log_metrics)
        if diverged:
            state = run.fail(diverged)
            logging.error("run %s: %s; %s", run.run_id, diverged, sweepd_answer(run, state))
        else:
            # The objective is -loss, to be maximized by the optimizer (higher is better).
            state = run.success(objective=-loss, cost=time.monotonic() - started)
            logging.info(
                "run %s: final loss %.6g, objective %.6g; %s",
                run.run_id, loss, -loss, sweepd_answer(run, state),
            )

    if args.wandb:
        wandb.finish()  # after the block: the summary carries the final protein.* keys
    return 1 if diverged else 0


if __name__ == "__main__":
    sys.exit(main())
