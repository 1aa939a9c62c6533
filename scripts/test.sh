#!/usr/bin/env bash
# Install what is missing, build, and run every test (C++ via CTest, Python client via pytest).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_missing_packages
echo "==> formatting: every C++ file as .clang-format says"
# Checked first, since it takes seconds; `clang-format -i FILE` fixes what it names. Only in a git
# checkout, which says which files are the project's.
if git -C "$repo_root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$repo_root" ls-files -z '*.cpp' '*.hpp' |
    (cd "$repo_root" && xargs -0 clang-format --dry-run --Werror)
else
  echo "not a git checkout: formatting not checked"
fi
build_release
echo "==> C++ tests"
ctest --test-dir "$build_dir" --output-on-failure --timeout 120 -j2
echo "==> Python client tests"
# Debian's interpreter, which has python3-pytest, not whichever python3 is first on PATH (pyenv,
# conda). The tests run the sweepd just built; naming the file means pytest always collects them.
env -u PYTEST_ADDOPTS PYTHONDONTWRITEBYTECODE=1 SWEEPD_BUILD_DIR="$build_dir" \
  timeout 600 /usr/bin/python3 -m pytest -q -p no:cacheprovider \
  "$repo_root/clients/python/tests/test_sweepd_client.py"

# The core, io, app and cli tiers and the fuzz corpora again, built with ASan and UBSan in a tree
# of their own (g++, like the release tree; any finding fails the test). Only their targets are
# built, to keep the stage short on two cores (the cli tier was added after the figures below).
# -O0: on the quiet 2-core machine the stage took 356 s (303 s building, 53 s testing) against
# 509 s (475 + 34) with -O1, which builds slower than it runs faster. The app tier adds little,
# since sweepd_io_tests already builds sweepd_app: on the shared machine under load (load average
# 7 on 2 cores, where core+io+fuzz took 1639 s to build) sweepd_app_tests took 73 s more to build
# and its 14 tests 5 s to run. -g1 gives reports file and line. docs/threads.md says why there is
# no ThreadSanitizer run.
asan_dir="${SWEEPD_ASAN_BUILD_DIR:-$repo_root/build-asan}"
asan_start=$SECONDS
echo "==> configuring and building the core, io, app and cli tests with ASan+UBSan in $asan_dir"
cmake -S "$repo_root" -B "$asan_dir" -DSWEEPD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g1" >/dev/null
cmake --build "$asan_dir" -j2 --target sweepd_core_tests sweepd_io_tests sweepd_app_tests \
  sweepd_cli_tests sweepd_fuzz_replay
echo "==> core, io, app and cli tests and the fuzz corpora under ASan+UBSan"
# Stack traces for UBSan's reports too; LeakSanitizer (part of ASan) checks every test's exit.
# Left out: the two tests that use up every file descriptor on purpose. UBSan's vptr check opens
# a pipe to probe memory and, finding none free, reports every virtual call as an invalid vptr.
fd_exhausting='ControlServerTest\.OutOfDescriptorsNewClientsHearBusyAndServingGoesOn'
fd_exhausting+='|ProcessWatch\.NoFileDescriptorLeftIsNeverTakenForAnExit'
env UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}" \
  ctest --test-dir "$asan_dir" -L '^(core|io|app|cli|fuzz_corpus)$' -E "^($fd_exhausting)\$" \
  --output-on-failure --timeout 300 -j2
echo "==> the sanitizer stage took $((SECONDS - asan_start)) s"
