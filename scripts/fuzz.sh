#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang with ASan and UBSan) in their own build directory and
# fuzzes each for a bounded time; exits non-zero when any of them found a crash. Not part of
# test.sh, which only replays the committed corpora.
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]   targets: protocol config wandb_summary run_codec
#
# N (or SWEEPD_FUZZ_SECONDS) is the time per target, 60 s by default. Inputs that found new
# coverage collect in build-fuzz/corpus/TARGET (seeded from fuzz/corpus/TARGET, which they do not
# change: copy in the few worth keeping); a crashing input is saved in build-fuzz/artifacts/TARGET.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

seconds="${SWEEPD_FUZZ_SECONDS:-60}"
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(protocol config wandb_summary run_codec)
case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: --seconds takes a whole number" >&2; exit 2 ;; esac

install_missing_packages
fuzz_build_dir="${SWEEPD_FUZZ_BUILD_DIR:-$repo_root/build-fuzz}"
echo "==> configuring and building the fuzzers in $fuzz_build_dir"
# -O1: what libFuzzer's documentation suggests; most of the time goes to the sanitizers anyway.
cmake -S "$repo_root" -B "$fuzz_build_dir" -DCMAKE_CXX_COMPILER=clang++ -DSWEEPD_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" >/dev/null
cmake --build "$fuzz_build_dir" -j2 --target "${targets[@]/#/sweepd_fuzz_}"

failed=()
for target in "${targets[@]}"; do
  work="$fuzz_build_dir/corpus/$target"
  artifacts="$fuzz_build_dir/artifacts/$target"
  mkdir -p "$work" "$artifacts"
  echo "==> fuzzing $target for ${seconds}s"
  # -timeout: an input that takes seconds is a finding too (quadratic work on the event loop).
  # -max_len: without it libFuzzer grows no input past the largest seed (a few hundred bytes).
  # The seeds come second so that new inputs are written to the work directory only.
  if ! "$fuzz_build_dir/fuzz/sweepd_fuzz_$target" -max_total_time="$seconds" -timeout=10 \
      -max_len=8192 -print_final_stats=1 -artifact_prefix="$artifacts/" "$work" "$repo_root/fuzz/corpus/$target" \
      2>"$fuzz_build_dir/fuzz-$target.log"; then
    failed+=("$target")
    tail -n 60 "$fuzz_build_dir/fuzz-$target.log" >&2
    echo "==> $target: CRASH, input saved in $artifacts/ (log: $fuzz_build_dir/fuzz-$target.log)" >&2
  else
    grep -E 'DONE|stat::number_of_executed_units|stat::average_exec_per_sec' \
      "$fuzz_build_dir/fuzz-$target.log" || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "==> fuzzing found crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "==> no crashes in ${targets[*]} (${seconds}s each)"
