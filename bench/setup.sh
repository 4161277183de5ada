#!/usr/bin/env bash
# Installs what the benchmark suite needs and is not in package.json: the load generators (ghz, h2load,
# redis-benchmark, kcat) and the peers (etcd, Redis). Idempotent and quick when everything is there:
# apt-get runs only when a command is missing. Java and Maven (for the Kafka runner, scripts/kafka/) are
# checked, not installed, as `npm test` needs them anyway.
#
# Usage: bench/setup.sh [--check]   (--check: report what is missing and exit 1, install nothing)
set -euo pipefail

readonly GHZ_MODULE="github.com/bojand/ghz/cmd/ghz"
# The newest tag that `go install ...@latest` resolves; pinned so every run uses the same generator.
readonly GHZ_VERSION="v0.93.0"
GOBIN_DIR="$(go env GOPATH 2>/dev/null || printf '%s/go' "$HOME")/bin"

check_only=false
[[ "${1:-}" == "--check" ]] && check_only=true

log() { printf 'bench/setup: %s\n' "$*" >&2; }

# command -> Debian package
declare -A APT_FOR=(
  [etcd]=etcd-server
  [etcdctl]=etcd-client
  [redis-server]=redis-server
  [redis-benchmark]=redis-tools
  [redis-cli]=redis-tools
  [kcat]=kcat
  [taskset]=util-linux
  [h2load]=nghttp2-client
)

missing_packages=()
for cmd in "${!APT_FOR[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing_packages+=("${APT_FOR[$cmd]}")
done

ghz_ok() { [[ -x "$GOBIN_DIR/ghz" ]] && go version -m "$GOBIN_DIR/ghz" 2>/dev/null | grep -q "ghz.*$GHZ_VERSION"; }

if $check_only; then
  status=0
  if ((${#missing_packages[@]})); then
    log "missing Debian packages: $(printf '%s\n' "${missing_packages[@]}" | sort -u | tr '\n' ' ')"
    status=1
  fi
  ghz_ok || { log "missing ghz $GHZ_VERSION in $GOBIN_DIR"; status=1; }
  exit "$status"
fi

if ((${#missing_packages[@]})); then
  mapfile -t unique < <(printf '%s\n' "${missing_packages[@]}" | sort -u)
  log "installing ${unique[*]} with apt-get"
  sudo_cmd=()
  [[ "$(id -u)" -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  # The packages' init scripts may try to start redis/etcd as system services: the suite starts its
  # own on loopback, so services that got started here are not ours to rely on (and are not used).
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${unique[@]}" >/dev/null
fi

if ! ghz_ok; then
  command -v go >/dev/null 2>&1 || {
    log "Go is needed to install ghz ($GHZ_MODULE@$GHZ_VERSION)"
    exit 1
  }
  log "installing ghz $GHZ_VERSION with go install"
  go install "$GHZ_MODULE@$GHZ_VERSION"
fi

for tool in java mvn; do
  command -v "$tool" >/dev/null 2>&1 || log "warning: $tool is missing: the Kafka peers will be skipped"
done

# One line a tool, for the results file.
printf 'ghz=%s\n' "$GOBIN_DIR/ghz"
printf 'ghz_version=%s\n' "$GHZ_VERSION"
printf 'etcd_version=%s\n' "$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')"
printf 'redis_version=%s\n' "$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
printf 'kcat_version=%s\n' "$(kcat -V 2>/dev/null | sed -n 's/^Version \([^ ]*\).*/\1/p' | head -n 1)"
printf 'java_version=%s\n' "$(java -version 2>&1 | head -n 1 | sed 's/"//g' || true)"
