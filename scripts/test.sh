#!/usr/bin/env bash
# Install what is missing, build, and run every test (C++ via CTest, Python client via pytest).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_missing_packages
build_release
echo "==> C++ tests"
ctest --test-dir "$build_dir" --output-on-failure --timeout 120 -j2
