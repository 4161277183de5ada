#!/usr/bin/env bash
# Copies this tree's build into a folder, to run later beside another build (bench/embedded-writes.ts
# --baseline): bin/, dist/, proto/, package.json, the descriptor set, and a link to node_modules.
#
# Usage: npm run build && bench/snapshot-build.sh /tmp/kvs2-base
set -euo pipefail
readonly repo="$(cd "$(dirname "$0")/.." && pwd)"
readonly dest="${1:?usage: bench/snapshot-build.sh <dir>}"
rm -rf "$dest"
mkdir -p "$dest"
cp -r "$repo/bin" "$repo/dist" "$repo/proto" "$repo/package.json" "$dest/"
mkdir -p "$dest/src/gen"
cp "$repo/src/gen/descriptor-set.binpb" "$dest/src/gen/"
ln -s "$repo/node_modules" "$dest/node_modules"
printf 'snapshot of %s (%s) in %s\n' "$repo" "$(git -C "$repo" rev-parse --short HEAD)" "$dest"
