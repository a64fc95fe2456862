#!/bin/bash
# Installs what Duet needs and is missing (Debian 12, run as root or with sudo).
#   scripts/install-deps.sh          build + test dependencies
#   DUET_NO_PYTHON=1 ...             skip the PyPI tools used only by tests (onnx checker)
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config
  libonnx-dev libprotobuf-dev protobuf-compiler
  libdnnl-dev libcli11-dev nlohmann-json3-dev libtomlplusplus-dev
  libgtest-dev libbenchmark-dev libopenmpi-dev
  libpng-dev libjpeg-dev zlib1g-dev
  clang libclang-rt-14-dev python3 python3-pip
  python3-onnx python3-numpy python3-torch python3-torchvision
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# PyPI tools for tests only (never a runtime dependency of the C++ core).
if [ -z "${DUET_NO_PYTHON:-}" ]; then
  if ! python3 -c "import onnx, numpy" 2>/dev/null; then
    echo "install-deps: installing the onnx checker and numpy from PyPI (test tools)"
    python3 -m pip install -q onnx numpy 2>/dev/null || python3 -m pip install -q --break-system-packages onnx numpy
  fi
fi
