#!/bin/sh
# The one command that runs every test: installs what is needed, builds,
# and runs the whole CTest suite (unit tests plain and under ASan+UBSan,
# KVM guest tests, integration tests over tap devices in namespaces).
set -eu
cd "$(dirname "$0")/.."
./scripts/build.sh
cd build
ctest --output-on-failure --timeout 900 "$@"
