#!/usr/bin/env python3
"""A toy training script reporting to sweepd with the Python client (no ML libraries needed).

    export SWEEPD_SOCKET=$PWD/var/sweepd.sock        # as printed by ./scripts/run.sh
    python3 examples/train.py --run-id ab12cd34 --sweep s1 --lr 0.01 --epochs 20
    python3 examples/train.py --lr 5                  # diverges: reported as failed
    python3 examples/train.py --crash                 # raises: failed, "RuntimeError: ..."
    build/sweepctl observations --sweep s1

It "trains" y = 3x + 1 by gradient descent with the suggested learning rate, heartbeats with the
epoch as progress, and reports the final loss as the objective and its runtime as the cost. A
divergent learning rate ends in a non-finite loss, which the client reports as a failure.

With --wandb (and wandb installed), the run is a W&B run: its id, entity and project are used for
sweepd, and the protein.* summary keys are also set in the run's own summary. Without sweepd
running, the script trains and exits normally (the client logs one warning).
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
    return p.parse_args()


def train(args, run, log_metrics):
    rng = random.Random(0)
    data = [(x, 3.0 * x + 1.0) for x in (rng.uniform(-1, 1) for _ in range(64))]
    w = b = 0.0
    loss = float("inf")
    for epoch in range(args.epochs):
        grad_w = grad_b = loss = 0.0
        for x, y in data:
            err = w * x + b - y
            loss += err * err / len(data)
            grad_w += 2 * err * x / len(data)
            grad_b += 2 * err / len(data)
        w -= args.lr * grad_w
        b -= args.lr * grad_b
        if not math.isfinite(loss) or abs(w) > 1e150:
            loss = float("nan")  # diverged
            break
        run.set_progress(epoch)  # sent with the next background heartbeat
        log_metrics({"epoch": epoch, "loss": loss})
        if args.crash and epoch == args.epochs // 2:
            raise RuntimeError("simulated crash at epoch %d" % epoch)
        time.sleep(args.step_seconds)
    return loss


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
        loss = train(args, run, log_metrics)
        state = run.success(loss, cost=time.monotonic() - started)  # NaN: reported as failed
        logging.info("run %s: final loss %.6g, sweepd says %s", run.run_id, loss, state or "(unreachable)")

    if args.wandb:
        wandb.finish()  # after the block: the summary carries the final protein.* keys
    return 0 if math.isfinite(loss) else 1


if __name__ == "__main__":
    sys.exit(main())
