#!/usr/bin/env bash
# Installs every Debian package ptq builds, tests and benchmarks with. Idempotent: when all are
# present it only checks (no apt-get update), so it is quick on a prepared machine.
set -euo pipefail
PACKAGES=(
  cmake g++ make pkg-config git curl ca-certificates
  libeigen3-dev liblapacke-dev libopenblas-dev libhdf5-dev
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev libsentencepiece-dev libpcre2-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
