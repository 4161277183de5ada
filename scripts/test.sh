#!/usr/bin/env bash
# `npm test`: type-check and build, lint, then run every test with node:test.
#
# The Kafka tests need real brokers. When KAFKA_BROKERS is not given, this starts a one-broker cluster
# with the Kafka runner (scripts/kafka/: Java and Maven fetch and run Apache Kafka) and stops it afterwards,
# also after a failure or Ctrl-C. Without
# Java or Maven the Kafka tests report themselves skipped, loudly; under CI (CI=true) that is a failure.
# Arguments are passed to `node --test` (e.g. --test-name-pattern=...); by default all tests run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

npm run --silent build
npm run --silent lint

if [ -z "${KAFKA_BROKERS:-}" ]; then
  if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
    # Our own state dir, so a cluster someone started by hand in .kafka/ is left alone.
    export KVS2_KAFKA_STATE="${KVS2_KAFKA_STATE:-$PWD/.kafka/npm-test}"
    trap 'node dist/scripts/kafka/cli.js down >/dev/null 2>&1 || true' EXIT
    line="$(node dist/scripts/kafka/cli.js up)"
    export KAFKA_BROKERS="${line#KAFKA_BROKERS=}"
    echo "test: Kafka for the tests at $KAFKA_BROKERS" >&2
  elif [ "${CI:-}" = "true" ]; then
    echo "test: CI=true but Java and Maven are missing, so no Kafka broker can run: failing" >&2
    exit 1
  else
    echo "test: WARNING: no Java or Maven here, so the Kafka tests will be SKIPPED" >&2
  fi
fi

# Not `exec`: the EXIT trap must still run to stop the broker this script started.
whole=false
if [ "$#" -eq 0 ]; then
  whole=true
  set -- 'dist/test/**/*.test.js'
fi
status=0
node --test --test-reporter=spec "$@" || status=$?

# The API's tests once more against nodes served by worker threads (--serve-workers, through the
# environment every test node inherits): the same calls, tokens, watches, limits and shutdowns must hold
# whichever thread serves them.
if [ "$whole" = true ]; then
  echo "test: the API's tests again with KVS2_SERVE_WORKERS=2" >&2
  KVS2_SERVE_WORKERS=2 node --test --test-reporter=spec \
    dist/test/e2e/kv-api.test.js dist/test/e2e/contract.test.js dist/test/e2e/node-status.test.js \
    dist/test/e2e/lifecycle.test.js dist/test/e2e/metrics.test.js dist/test/e2e/auth.test.js \
    dist/test/e2e/server-tls.test.js dist/test/e2e/watch-stalled.test.js dist/test/e2e/overload.test.js \
    dist/test/e2e/request-limits.test.js dist/test/e2e/snapshot-remote.test.js dist/test/e2e/conditional-writes.test.js \
    dist/test/e2e/kafka-consistency.test.js dist/test/e2e/kafka-readiness.test.js \
    dist/test/e2e/compact-after-bootstrap.test.js || status=$?
fi
exit "$status"
