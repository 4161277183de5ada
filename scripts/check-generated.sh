#!/usr/bin/env bash
# `npm run check:generated` (CI): fails when src/gen/ is not exactly what `npm run generate` makes from
# proto/, i.e. when someone edited a generated file or changed a proto without regenerating.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
bash scripts/generate.sh "$fresh/gen"
if ! diff -r src/gen "$fresh/gen" >"$fresh/diff.txt"; then
  cat "$fresh/diff.txt" >&2
  echo >&2
  echo "src/gen/ is not what \`npm run generate\` makes from proto/ (differences above)." >&2
  echo "Run \`npm run generate\` and commit the result; never edit src/gen/ by hand." >&2
  exit 1
fi
echo "src/gen/ is up to date with proto/."
