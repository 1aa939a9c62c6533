#!/usr/bin/env bash
# Install what is missing, build, and run sweepd in the foreground on config/local.yaml
# (socket and state under ./var/, W&B offline). Extra arguments go to sweepd.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_missing_packages
build_release
cd "$repo_root"
mkdir -p var
echo "==> sweepd on $repo_root/var/sweepd.sock (Ctrl-C stops it)"
echo "    in another terminal: export SWEEPD_SOCKET=$repo_root/var/sweepd.sock; $build_dir/sweepctl status"
exec "$build_dir/sweepd" --config "$repo_root/config/local.yaml" "$@"
