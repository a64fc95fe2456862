#!/bin/bash
# Developer build into build-NAME (Release, ccache shared across build folders).
# Usage: scripts/dev-build.sh NAME [ninja targets...]
set -e
name=${1:-dev}; shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
export CCACHE_DIR=${CCACHE_DIR:-/tmp/ccache} CCACHE_NOHASHDIR=true CCACHE_BASEDIR=$root
dir=$root/build-$name
if [ ! -f "$dir/build.ninja" ]; then
  cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDUET_TESTS=OFF >/dev/null
fi
ninja -C "$dir" -j "${JOBS:-2}" ${@:-duet_cli}
