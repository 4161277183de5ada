#!/usr/bin/env bash
# `npm run generate`: everything in src/gen/, made from proto/ by buf (offline: buf and ts-proto are
# devDependencies), so src/gen/ is never edited by hand.
#   kvs2.ts                the message codecs and grpc-js service definition (ts-proto, see buf.gen.yaml)
#   descriptor-set.binpb   a FileDescriptorSet of every proto we serve, for server reflection
# Usage: scripts/generate.sh [DIR]   writes into DIR (default src/gen), replacing what it held.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-src/gen}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
buf generate --output "$work"
buf build --as-file-descriptor-set --output "$work/src/gen/descriptor-set.binpb"
node scripts/share-empty-bytes.mjs "$work"/src/gen/*.ts

rm -rf "$out"
mkdir -p "$out"
cp -R "$work/src/gen/." "$out/"
