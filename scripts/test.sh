#!/usr/bin/env bash
# Install what is missing, build, and run every test (C++ via CTest, Python client via pytest).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_missing_packages
build_release
echo "==> C++ tests"
ctest --test-dir "$build_dir" --output-on-failure --timeout 120 -j2
echo "==> Python client tests"
# Debian's interpreter, which has python3-pytest, not whichever python3 is first on PATH (pyenv,
# conda). The tests run the sweepd just built; naming the file means pytest always collects them.
env -u PYTEST_ADDOPTS PYTHONDONTWRITEBYTECODE=1 SWEEPD_BUILD_DIR="$build_dir" \
  timeout 600 /usr/bin/python3 -m pytest -q -p no:cacheprovider \
  "$repo_root/clients/python/tests/test_sweepd_client.py"
