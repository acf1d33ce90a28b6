#!/bin/sh
# build.sh OUT: builds the functions binary (./functions: every coalmine
# function in one program; FUNCTION_TARGET picks the one it serves) the way
# the container image does. The Dockerfile runs this script, and so does
# scripts/image/check.sh on a machine without Docker, so both build the same.
#   - CGO_ENABLED=0: a static binary, no libc needed at run time;
#   - -trimpath: no build machine paths in the binary;
#   - -ldflags '-s -w': no symbol table or DWARF (smaller image);
#   - -buildvcs=false: the build context has no .git.
set -eu
out="${1:?usage: build.sh OUT (the binary to write)}"
cd "$(dirname "$0")/../.."
CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w' -o "$out" ./functions
