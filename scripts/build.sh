#!/bin/sh
# Installs what is needed (scripts/setup.sh) and builds ftvm into build/.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"
