# Shared by run.sh and test.sh: install missing Debian packages, configure and build.
# shellcheck shell=bash
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${SWEEPD_BUILD_DIR:-$repo_root/build}"

required_packages() {
  sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$repo_root/third_party/debian-packages.txt" | awk '{print $1}'
}

missing_packages() {
  local pkg
  for pkg in $(required_packages); do
    dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

install_missing_packages() {
  local missing
  missing="$(missing_packages | tr '\n' ' ')"
  [ -z "${missing// /}" ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "sweepd needs these Debian packages, which are not installed:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y $missing" >&2
    exit 1
  fi
  echo "==> installing: $missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing
}

build_release() {
  echo "==> configuring and building in $build_dir"
  cmake -S "$repo_root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build_dir" -j2
}
