#!/bin/sh
# A tiny hyperparameter sweep in plain shell, supervised by sweepd through `sweepctl exec`.
#
# Each trial runs a dummy training command under `sweepctl exec`, which registers the run with
# sweepd (its hyperparameters as the suggestion), heartbeats while it trains and records how it
# ended: success with the objective and cost the command wrote to its result file, or failure with
# its exit code. Without sweepd the trials still run; sweepctl exec warns and carries on.
#
#   examples/sweep.sh [TRIALS]          (1-5 trials, default 4)
#
# Environment: SWEEPD_SOCKET  sweepd's socket (default: sweepctl's, /run/sweepd/sweepd.sock)
#              SWEEPCTL       the sweepctl to use (default: sweepctl in PATH, else this
#                             repository's build/sweepctl; a shell alias is not seen by scripts)
#              SWEEP          the sweep id (default: shell-demo-<unix time>)
#              TRAIN_SECONDS  how long each dummy trial "trains" (default: 1)
set -eu

# sweepctl: $SWEEPCTL, else the one in PATH, else the repository's build (an alias such as
# `alias sweepctl=$PWD/build/sweepctl` exists only in the interactive shell that defined it).
executable() {  # the program $1 names (a path, or a name looked up in PATH), or nothing
  case $1 in
    */*) if [ -f "$1" ] && [ -x "$1" ]; then echo "$1"; fi ;;
    *) command -v "$1" 2>/dev/null || true ;;
  esac
}
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
if [ -n "${SWEEPCTL:-}" ]; then
  sweepctl=$(executable "$SWEEPCTL")
  if [ -z "$sweepctl" ]; then
    echo "sweep.sh: SWEEPCTL=$SWEEPCTL is not an executable program" >&2
    exit 2
  fi
else
  sweepctl=$(executable sweepctl)
  [ -n "$sweepctl" ] || sweepctl=$(executable "$here/../build/sweepctl")
  if [ -z "$sweepctl" ]; then
    echo "sweep.sh: sweepctl not found: set SWEEPCTL=/path/to/sweepctl, put sweepctl in PATH," \
      "or build it (cmake --build build --target sweepctl)" >&2
    exit 2
  fi
fi
sweep=${SWEEP:-shell-demo-$(date +%s)}
trials=${1:-4}

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

# The trial: pretends to train, then writes {"objective": ..., "cost": ...} (best at lr = 0.01).
# A learning rate above 0.05 "diverges" and exits 1, so the sweep shows a failed run too.
cat > "$workdir/train.sh" <<'EOF'
lr=$1 result=$2 seconds=${TRAIN_SECONDS:-1}
sleep "$seconds"
if awk -v lr="$lr" 'BEGIN { exit !(lr > 0.05) }'; then
  echo "train: loss diverged at lr=$lr" >&2
  exit 1
fi
awk -v lr="$lr" -v s="$seconds" 'BEGIN {
  d = log(lr / 0.01)
  printf "{\"objective\": %.4f, \"cost\": %.3f}\n", 1 / (1 + d * d), s + 0.001
}' > "$result"
EOF

i=0
for lr in 0.003 0.01 0.1 0.03 0.001; do
  [ "$i" -lt "$trials" ] || break
  i=$((i + 1))
  run="$sweep-$i"
  result="$workdir/$run.json"
  if "$sweepctl" exec --run "$run" --sweep "$sweep" --suggestion "{\"lr\": $lr}" \
      --result-file "$result" --interval 10 -- sh "$workdir/train.sh" "$lr" "$result"; then
    echo "trial $run (lr=$lr): done"
  else
    echo "trial $run (lr=$lr): failed with status $?"
  fi
done

"$sweepctl" observations --sweep "$sweep" || echo "(sweepd is not reachable: no observations)"
