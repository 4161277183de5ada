#!/usr/bin/env bash
# Run a real Apache Kafka cluster (KRaft mode, no ZooKeeper, no Docker) on 127.0.0.1 for
# development and tests. Kafka's own jars come from Maven Central through `mvn` and are cached.
#
# Usage:
#   scripts/kafka.sh up [--brokers N]   start N (default 1) combined broker+controller nodes; prints
#                                       exactly one stdout line KAFKA_BROKERS=127.0.0.1:p[,...] once
#                                       every broker answers requests. If a cluster with the same N
#                                       already runs in the state dir, it prints that cluster's line
#                                       again (exit 0); a different N, or a half-stopped cluster, fails.
#   scripts/kafka.sh down               stop the cluster (SIGTERM, then SIGKILL) and delete its data;
#                                       fine when nothing runs. Broker logs stay in <state>/logs.
#   scripts/kafka.sh status             show brokers, pids and ports; exit 0 when all brokers run,
#                                       2 when only some do (after stop-broker), 1 when none does.
#   scripts/kafka.sh stop-broker ID     SIGKILL broker ID (1..N) to simulate a crash.
#   scripts/kafka.sh start-broker ID    restart broker ID with its ports and data; waits until it is
#                                       registered again.
#   scripts/kafka.sh run-class CLASS [ARGS...]
#                                       run a Kafka tool class with Kafka's classpath (e.g.
#                                       org.apache.kafka.tools.TopicCommand), logging WARN to stderr.
#
# Environment:
#   KVS2_KAFKA_STATE    state dir (pids, ports, configs, logs); default <repo>/.kafka. Use different
#                       values to run independent clusters at once.
#   KVS2_KAFKA_CACHE    jar cache; default $HOME/.cache/kvs2/kafka-<version>
#   KVS2_KAFKA_TIMEOUT  seconds to wait for brokers to become ready (default 90)
#   KVS2_KAFKA_STOP_TIMEOUT  seconds `down` waits after SIGTERM before SIGKILL (default 20)
#   KVS2_KAFKA_HEAP_OPTS     JVM heap options per broker (default depends on N)
#   KVS2_KAFKA_EXTRA_PROPS   extra broker properties, one key=value per line, appended to every node
#   JAVA_HOME           Java 17+ to use (else `java` on PATH)
set -euo pipefail

# One pinned version: 4.1.x is what the client library we test against supports, and it resolves with
# all its dependencies from Maven Central on Java 17.
readonly KAFKA_VERSION="4.1.1"
readonly SCALA_VERSION="2.13"
# Kafka 4.1 is built against SLF4J 1.7 and Log4j 2.24.3 (log4j-api/-core come as its runtime deps);
# its binary distribution binds the two with log4j-slf4j-impl, so we do the same.
readonly LOG4J_VERSION="2.24.3"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
STATE_DIR="${KVS2_KAFKA_STATE:-$REPO_DIR/.kafka}"
CACHE_DIR="${KVS2_KAFKA_CACHE:-${HOME:-/tmp}/.cache/kvs2/kafka-$KAFKA_VERSION}"
LIBS_DIR="$CACHE_DIR/libs"
READY_TIMEOUT="${KVS2_KAFKA_TIMEOUT:-90}"
STOP_TIMEOUT="${KVS2_KAFKA_STOP_TIMEOUT:-20}"
ENV_FILE="$STATE_DIR/cluster.env"
LOG_DIR="$STATE_DIR/logs"
# Bind and advertise loopback only: clients must be able to reach exactly what is advertised.
readonly HOST="127.0.0.1"
readonly MAX_START_ATTEMPTS=3

# Filled from $ENV_FILE (see save_env / load_env).
CLUSTER_KAFKA_VERSION=""
NUM_BROKERS=""
CLUSTER_ID=""
DATA_DIR=""
BROKER_PORTS=()     # index = node id
CONTROLLER_PORTS=() # index = node id

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() {
  printf 'kafka.sh: error: %s\n' "$*" >&2
  exit 1
}

usage() {
  # The comment block at the top of this file is the help text.
  sed -n '4,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -n 's/^# \{0,1\}//p' >&2
}

# ---------------------------------------------------------------------------------------------
# Java and jars

find_java() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    JAVA="$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    JAVA="$(command -v java)"
  else
    die "no java found (install a JDK 17+ or set JAVA_HOME)"
  fi
  # Kafka 4.x brokers need Java 17 or newer.
  local major
  major="$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')"
  [[ "$major" =~ ^[0-9]+$ ]] || die "could not determine the version of $JAVA"
  ((major >= 17)) || die "Kafka $KAFKA_VERSION needs Java 17+, but $JAVA is Java $major"
}

cache_complete() {
  # The marker is written only after a download finished and was checked, so a half-copied cache
  # (interrupted mvn) is never used.
  [[ -f "$CACHE_DIR/.complete" && "$(cat "$CACHE_DIR/.complete")" == "$KAFKA_VERSION" &&
    -f "$LIBS_DIR/kafka_$SCALA_VERSION-$KAFKA_VERSION.jar" &&
    -f "$LIBS_DIR/kafka-tools-$KAFKA_VERSION.jar" &&
    -f "$LIBS_DIR/log4j-slf4j-impl-$LOG4J_VERSION.jar" ]]
}

ensure_jars() {
  cache_complete && return 0
  mkdir -p "$(dirname "$CACHE_DIR")"
  # Two clusters may be started at once from an empty cache: serialise the download.
  local lock="$CACHE_DIR.lock"
  exec 8>"$lock"
  flock -w 600 8 || die "another download holds $lock"
  if cache_complete; then
    exec 8>&-
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "jars for Kafka $KAFKA_VERSION are not cached in $CACHE_DIR and mvn is not installed"
  log "downloading Kafka $KAFKA_VERSION jars with Maven into $CACHE_DIR (once)"
  local tmp
  tmp="$(mktemp -d "$CACHE_DIR.tmp.XXXXXX")"
  # A throwaway pom: the broker (kafka_2.13), the admin/console tools (kafka-tools, minus Kafka
  # Connect's runtime that it drags in with Jetty and Jersey and that no tool we use needs), and the
  # SLF4J->Log4j 2 binding so that logs go to our log4j2 config instead of SLF4J's no-op warning.
  cat >"$tmp/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kvs2</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$SCALA_VERSION</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion>
          <groupId>org.apache.kafka</groupId>
          <artifactId>connect-runtime</artifactId>
        </exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  if ! (cd "$tmp" && mvn -B -q -Dstyle.color=never dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp/libs") >"$tmp/mvn.log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$tmp/mvn.log" | tail -n 30 >&2
    rm -rf "$tmp"
    die "Maven could not download Kafka $KAFKA_VERSION (see output above)"
  fi
  # Replace an incomplete earlier download, but never delete a directory that is not ours.
  if [[ -e "$CACHE_DIR" ]]; then
    if [[ -f "$CACHE_DIR/pom.xml" ]] && grep -q 'local.kvs2' "$CACHE_DIR/pom.xml"; then
      rm -rf "$CACHE_DIR"
    else
      rmdir "$CACHE_DIR" 2>/dev/null || die "$CACHE_DIR exists and is not a kafka.sh cache; remove it or set KVS2_KAFKA_CACHE"
    fi
  fi
  mv "$tmp" "$CACHE_DIR"
  printf '%s\n' "$KAFKA_VERSION" >"$CACHE_DIR/.complete"
  cache_complete || die "download finished but $LIBS_DIR lacks expected jars"
  exec 8>&-
  log "cached $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars"
}

# Kafka tools (admin client, storage formatter) as short-lived JVMs: tiny heap, C1 only and the
# serial GC make them start faster, which matters for the readiness polling on 2 cores.
tool_java() {
  TOOL_JAVA=("$JAVA" -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$STATE_DIR/log4j2-tools.properties"
    -cp "$LIBS_DIR/*")
}
run_class() {
  tool_java
  "${TOOL_JAVA[@]}" "$@"
}

# ---------------------------------------------------------------------------------------------
# State

save_env() {
  {
    printf 'CLUSTER_KAFKA_VERSION=%q\n' "$KAFKA_VERSION"
    printf 'NUM_BROKERS=%q\n' "$NUM_BROKERS"
    printf 'CLUSTER_ID=%q\n' "$CLUSTER_ID"
    printf 'DATA_DIR=%q\n' "$DATA_DIR"
    printf 'BROKER_PORTS=(%s)\n' "${BROKER_PORTS[*]}"
    printf 'CONTROLLER_PORTS=(%s)\n' "${CONTROLLER_PORTS[*]}"
  } >"$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

load_env() {
  [[ -f "$ENV_FILE" ]] || return 1
  # shellcheck source=/dev/null
  source "$ENV_FILE"
  # Arrays were saved 0-based without the unused slot 0; re-index to node ids 1..N.
  BROKER_PORTS=("" "${BROKER_PORTS[@]}")
  CONTROLLER_PORTS=("" "${CONTROLLER_PORTS[@]}")
}

brokers_line() {
  local id list=()
  for ((id = 1; id <= NUM_BROKERS; id++)); do list+=("$HOST:${BROKER_PORTS[id]}"); done
  local IFS=,
  printf 'KAFKA_BROKERS=%s\n' "${list[*]}"
}

props_file() { printf '%s/broker-%s.properties' "$STATE_DIR" "$1"; }
pid_file() { printf '%s/broker-%s.pid' "$STATE_DIR" "$1"; }

# A pid counts as our broker only if it is alive (zombies count as dead: PID 1 here may not reap
# them) and its command line names this state dir's config file, so a recycled pid is never killed.
broker_pid() {
  local id="$1" f pid
  f="$(pid_file "$id")"
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(props_file "$id")" || return 1
  printf '%s' "$pid"
}

pid_alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != "Z" ]]
}

running_ids() {
  local id
  for ((id = 1; id <= NUM_BROKERS; id++)); do
    if broker_pid "$id" >/dev/null; then printf '%s ' "$id"; fi
  done
}

# Serialise commands on one state dir (e.g. two `up`s at once).
lock_state() {
  mkdir -p "$STATE_DIR" "$LOG_DIR"
  exec 9>"$STATE_DIR/.lock"
  flock -w 300 9 || die "another kafka.sh command holds $STATE_DIR/.lock"
}

# ---------------------------------------------------------------------------------------------
# Ports

port_in_use() {
  # Something accepts connections there (on 127.0.0.1 or on all addresses).
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null && return 0
  # Something listens on another local address only. (Connections in TIME_WAIT on the port, as
  # after a killed broker, do not block a new listener: Java binds with SO_REUSEADDR.)
  ss -Htln 2>/dev/null | awk -v p=":$1" '$4 ~ p"$" {found=1} END {exit !found}'
}

# Random ports below the kernel's ephemeral range, so outgoing connections (which take ephemeral
# ports) cannot grab them between our check and the JVM binding them; a bind race that still
# happens is caught by the retry in cmd_up.
PICKED_PORTS=" "
PORT=""
pick_port() { # sets PORT (not printed: a $(subshell) would lose PICKED_PORTS)
  local low high p tries=0
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
  if ((low > 21000)); then high=$((low - 1)); else high=65000; fi
  low=20000
  while ((tries++ < 500)); do
    p=$((low + (RANDOM * 32768 + RANDOM) % (high - low + 1)))
    [[ "$PICKED_PORTS" == *" $p "* ]] && continue
    port_in_use "$p" && continue
    PICKED_PORTS+="$p "
    PORT="$p"
    return 0
  done
  die "could not find a free port on $HOST"
}

# ---------------------------------------------------------------------------------------------
# Config files

write_log4j_configs() {
  # Brokers: everything at INFO into one file per broker (named by a system property), the chatty
  # request/state-change loggers at WARN. Nothing goes to stdout.
  cat >"$STATE_DIR/log4j2-broker.properties" <<'EOF'
status = warn
name = kvs2-kafka-broker
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kvs2.broker.log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
EOF
  # Tools: warnings and errors only, to stderr (their real output is on stdout).
  cat >"$STATE_DIR/log4j2-tools.properties" <<'EOF'
status = warn
name = kvs2-kafka-tools
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

write_broker_props() {
  local id="$1" n="$NUM_BROKERS" voters="" i
  for ((i = 1; i <= n; i++)); do voters+="${voters:+,}$i@$HOST:${CONTROLLER_PORTS[i]}"; done
  local rf3=$((n < 3 ? n : 3)) isr2=$((n < 2 ? n : 2)) default_rf min_isr
  if ((n >= 3)); then default_rf=3 min_isr=2; else default_rf=1 min_isr=1; fi
  cat >"$(props_file "$id")" <<EOF
# Generated by scripts/kafka.sh for a throwaway test cluster; edits are lost on the next 'up'.
# Combined KRaft node: broker and controller in one JVM, static controller quorum.
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://$HOST:${BROKER_PORTS[id]},CONTROLLER://$HOST:${CONTROLLER_PORTS[id]}
advertised.listeners=PLAINTEXT://$HOST:${BROKER_PORTS[id]}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA_DIR/broker-$id

# Replication matched to the cluster size, so internal topics can be created at all.
default.replication.factor=$default_rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf3
transaction.state.log.replication.factor=$rf3
transaction.state.log.min.isr=$isr2
share.coordinator.state.topic.replication.factor=$rf3
share.coordinator.state.topic.min.isr=$isr2
# Fewer partitions for internal topics (default 50): their first creation, on the first consumer
# group or transaction, is much faster on a 2-core machine.
offsets.topic.num.partitions=5
transaction.state.log.num.partitions=5

# Fast tests: no rebalance delay, explicit topic creation only, deletable topics, a log cleaner
# that looks for work every second (compaction tests), with a small dedupe buffer for a small heap.
group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=false
delete.topic.enable=true
log.cleaner.backoff.ms=1000
log.cleaner.dedupe.buffer.size=33554432
# Fewer threads than the defaults: 2 cores, several brokers.
num.network.threads=2
num.io.threads=4
EOF
  if [[ -n "${KVS2_KAFKA_EXTRA_PROPS:-}" ]]; then
    printf '\n# From KVS2_KAFKA_EXTRA_PROPS\n%s\n' "$KVS2_KAFKA_EXTRA_PROPS" >>"$(props_file "$id")"
  fi
}

new_cluster_id() {
  # A Kafka Uuid: 16 random bytes, base64url without padding (22 chars). Kafka never hands out ids
  # starting with '-' (they would look like options), so neither do we.
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* ]] && break
  done
  printf '%s' "$id"
}

# ---------------------------------------------------------------------------------------------
# Broker processes

heap_opts() {
  if [[ -n "${KVS2_KAFKA_HEAP_OPTS:-}" ]]; then
    printf '%s' "$KVS2_KAFKA_HEAP_OPTS"
  elif ((NUM_BROKERS == 1)); then
    printf '%s' "-Xms256m -Xmx512m"
  else
    printf '%s' "-Xms192m -Xmx384m"
  fi
}

start_broker_process() {
  local id="$1" props pidf out heap
  props="$(props_file "$id")"
  pidf="$(pid_file "$id")"
  out="$LOG_DIR/broker-$id.out"
  heap="$(heap_opts)"
  rm -f "$pidf"
  printf '\n===== %s starting broker %s\n' "$(date '+%F %T')" "$id" >>"$out"
  # setsid: the broker gets its own session, so it outlives this script and a Ctrl-C in the caller's
  # terminal; its stdio is redirected so that it never holds the caller's stdout open (which would
  # make `$(scripts/kafka.sh up)` hang). The inner shell records its own pid and then becomes java
  # (exec), so the pid file holds the java pid even if setsid had to fork.
  # shellcheck disable=SC2086,SC2016 # heap options are words; $$ is for the inner shell
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' kvs2-kafka-broker "$pidf" \
    "$JAVA" $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$STATE_DIR/log4j2-broker.properties" \
    -Dkvs2.broker.log="$LOG_DIR/broker-$id.log" \
    -cp "$LIBS_DIR/*" kafka.Kafka "$props" \
    </dev/null >>"$out" 2>&1 8>&- 9>&- &
  # Not a job of ours any more: no "Killed" notices from bash when stop-broker/cleanup kill it.
  disown "$!" 2>/dev/null || true
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s "$pidf" ]] && return 0
    sleep 0.1
  done
  die "broker $id did not start (no pid file)"
}

# Kill and wait until the process is gone (or a zombie).
kill_and_wait() {
  local sig="$1" timeout="$2" pid
  shift 2
  for pid in "$@"; do kill "-$sig" "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + timeout)) alive
  while :; do
    alive=0
    for pid in "$@"; do if pid_alive "$pid"; then alive=1; fi; done
    ((alive)) || return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# Did this broker die because a port was taken?
bind_failed() {
  grep -qE 'BindException|Address already in use' \
    "$LOG_DIR/broker-$1.out" "$LOG_DIR/broker-$1.log" 2>/dev/null
}

# The ids of brokers that answered a real ApiVersions request, as listed in the cluster metadata
# (only registered, unfenced brokers are listed). BrokerApiVersionsCommand prints one
# "host:port (id: N rack: ...) -> (" line per broker it reached, or "-> ERROR" when it could not.
answering_ids() {
  tool_java
  # timeout: the admin client retries for a long time when nothing answers.
  timeout 30 "${TOOL_JAVA[@]}" org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$1" 2>/dev/null |
    sed -nE 's/^[^ ]+ \(id: ([0-9]+) rack: [^)]*\) -> \($/\1/p' | sort -n | tr '\n' ' ' || true
}

bootstrap_of() {
  local id list=()
  for id in "$@"; do list+=("$HOST:${BROKER_PORTS[id]}"); done
  local IFS=,
  printf '%s' "${list[*]}"
}

# Wait until every broker in $1 (space-separated ids) answers and is registered. Returns 0 when
# ready, 1 on timeout or death (2 when the death was a port bind failure).
wait_ready() {
  local want="$1" deadline=$((SECONDS + READY_TIMEOUT)) id got pid alive_ids
  log "waiting up to ${READY_TIMEOUT}s for broker(s) $want to accept requests"
  while :; do
    alive_ids=()
    for id in $want; do
      if ! pid="$(broker_pid "$id")"; then
        if bind_failed "$id"; then
          log "broker $id could not bind its ports"
          return 2
        fi
        log "broker $id exited during start-up; last lines of its logs:"
        tail -n 20 "$LOG_DIR/broker-$id.out" "$LOG_DIR/broker-$id.log" >&2 2>/dev/null || true
        return 1
      fi
      alive_ids+=("$id")
    done
    # Cheap check first: do not start a JVM while the ports are not even listening.
    local listening=1
    for id in $want; do port_in_use "${BROKER_PORTS[id]}" || listening=0; done
    if ((listening)); then
      # Ask through all running brokers, so any of them can serve the metadata.
      # shellcheck disable=SC2046 # ids are words
      got=" $(answering_ids "$(bootstrap_of $(running_ids))")"
      local missing=0
      for id in $want; do [[ "$got" == *" $id "* ]] || missing=1; done
      ((missing)) || return 0
    fi
    if ((SECONDS >= deadline)); then
      log "timed out after ${READY_TIMEOUT}s; brokers answering:${got:- none}"
      for id in $want; do
        log "last lines of broker $id's log ($LOG_DIR/broker-$id.log):"
        tail -n 15 "$LOG_DIR/broker-$id.log" >&2 2>/dev/null || true
      done
      return 1
    fi
    sleep 1
  done
}

stop_all_processes() {
  local sig="$1" timeout="$2" id pid pids=()
  for ((id = 1; id <= NUM_BROKERS; id++)); do
    if pid="$(broker_pid "$id")"; then pids+=("$pid"); fi
  done
  ((${#pids[@]})) || return 0
  kill_and_wait "$sig" "$timeout" "${pids[@]}"
}

remove_cluster_files() {
  local id
  # Delete the data dir only if it is one of ours (marker file), never an arbitrary path.
  if [[ -n "$DATA_DIR" && -f "$DATA_DIR/.kvs2-kafka-data" ]]; then rm -rf "$DATA_DIR"; fi
  for ((id = 1; id <= ${NUM_BROKERS:-0}; id++)); do rm -f "$(pid_file "$id")" "$(props_file "$id")"; done
  rm -f "$ENV_FILE"
}

# ---------------------------------------------------------------------------------------------
# Commands

UP_STARTED=0
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup_failed_up() {
  if ((UP_STARTED)); then
    log "cleaning up the brokers this 'up' started"
    stop_all_processes KILL 10 || true
    remove_cluster_files
  fi
}

cmd_up() {
  local n=1
  while (($#)); do
    case "$1" in
      --brokers)
        [[ $# -ge 2 ]] || die "--brokers needs a number"
        n="$2"
        shift 2
        ;;
      --brokers=*)
        n="${1#*=}"
        shift
        ;;
      *) die "unknown option for up: $1" ;;
    esac
  done
  [[ "$n" =~ ^[1-9]$ ]] || die "--brokers must be a number from 1 to 9, got '$n'"

  find_java
  lock_state
  if load_env; then
    local running
    running="$(running_ids)"
    if [[ -n "$running" ]]; then
      if ((NUM_BROKERS == n)) && [[ "$running" == "$(seq -s ' ' 1 "$n") " ]]; then
        log "a $n-broker cluster already runs in $STATE_DIR; reusing it"
        brokers_line
        return 0
      fi
      die "a cluster already runs in $STATE_DIR (brokers: $NUM_BROKERS, running ids: $running); run 'scripts/kafka.sh down' first, or set KVS2_KAFKA_STATE for another cluster"
    fi
    log "removing stale state of a cluster that no longer runs"
    remove_cluster_files
  fi
  ensure_jars
  write_log4j_configs

  NUM_BROKERS="$n"
  UP_STARTED=1
  trap cleanup_failed_up EXIT
  trap 'exit 130' INT TERM

  local attempt id rc
  for ((attempt = 1; attempt <= MAX_START_ATTEMPTS; attempt++)); do
    CLUSTER_ID="$(new_cluster_id)"
    DATA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/kvs2-kafka.XXXXXX")"
    touch "$DATA_DIR/.kvs2-kafka-data"
    BROKER_PORTS=("")
    CONTROLLER_PORTS=("")
    for ((id = 1; id <= n; id++)); do
      pick_port
      BROKER_PORTS+=("$PORT")
      pick_port
      CONTROLLER_PORTS+=("$PORT")
    done
    save_env
    for ((id = 1; id <= n; id++)); do
      write_broker_props "$id"
      : >"$LOG_DIR/broker-$id.out"
      : >"$LOG_DIR/broker-$id.log"
    done
    # Format every node's storage with the same cluster id (writes meta.properties and the
    # bootstrap metadata checkpoint); in parallel, since each is a JVM start.
    log "formatting storage for $n node(s), cluster id $CLUSTER_ID"
    local fpids=()
    for ((id = 1; id <= n; id++)); do
      run_class kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$(props_file "$id")" \
        >>"$LOG_DIR/broker-$id.out" 2>&1 &
      fpids+=("$!")
    done
    for ((id = 1; id <= n; id++)); do
      wait "${fpids[id - 1]}" || {
        tail -n 20 "$LOG_DIR/broker-$id.out" >&2
        die "formatting the storage of broker $id failed"
      }
    done
    log "starting $n broker(s) on $(bootstrap_of $(seq 1 "$n")) (attempt $attempt)"
    for ((id = 1; id <= n; id++)); do start_broker_process "$id"; done
    rc=0
    wait_ready "$(seq -s ' ' 1 "$n")" || rc=$?
    if ((rc == 0)); then
      trap - EXIT INT TERM
      log "cluster ready (state: $STATE_DIR, data: $DATA_DIR, logs: $LOG_DIR)"
      brokers_line
      return 0
    fi
    stop_all_processes KILL 10 || true
    remove_cluster_files
    ((rc == 2)) || break
    log "a port was taken meanwhile; retrying with other ports"
  done
  die "the Kafka cluster did not start (logs in $LOG_DIR)"
}

cmd_down() {
  lock_state
  if ! load_env; then
    log "no cluster in $STATE_DIR"
    return 0
  fi
  local running
  running="$(running_ids)"
  if [[ -n "$running" ]]; then
    # SIGTERM makes each node shut down in order (controlled shutdown, log flush). When the whole
    # quorum goes down at once the last nodes can wait for a controller that is gone: bounded.
    log "stopping broker(s) $running"
    if ! stop_all_processes TERM "$STOP_TIMEOUT"; then
      log "still running after ${STOP_TIMEOUT}s; sending SIGKILL"
      stop_all_processes KILL 10 || die "could not kill the brokers (pids in $STATE_DIR)"
    fi
  fi
  remove_cluster_files
  log "stopped; data removed (logs kept in $LOG_DIR)"
}

cmd_status() {
  if ! load_env; then
    echo "no Kafka cluster (state dir: $STATE_DIR)"
    return 1
  fi
  local id pid up=0
  echo "Kafka $CLUSTER_KAFKA_VERSION cluster $CLUSTER_ID, $NUM_BROKERS broker(s), state $STATE_DIR, data $DATA_DIR"
  for ((id = 1; id <= NUM_BROKERS; id++)); do
    if pid="$(broker_pid "$id")"; then
      up=$((up + 1))
      echo "broker $id: running, pid $pid, broker port ${BROKER_PORTS[id]}, controller port ${CONTROLLER_PORTS[id]}"
    else
      echo "broker $id: stopped, broker port ${BROKER_PORTS[id]}, controller port ${CONTROLLER_PORTS[id]}"
    fi
  done
  brokers_line
  if ((up == NUM_BROKERS)); then return 0; fi
  if ((up == 0)); then return 1; fi
  return 2
}

check_id() {
  if ! [[ "$1" =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > NUM_BROKERS)); then
    die "broker id must be 1..$NUM_BROKERS, got '$1'"
  fi
}

cmd_stop_broker() {
  [[ $# -eq 1 ]] || die "usage: scripts/kafka.sh stop-broker ID"
  lock_state
  load_env || die "no cluster in $STATE_DIR"
  check_id "$1"
  local pid
  if ! pid="$(broker_pid "$1")"; then
    log "broker $1 is not running"
    return 0
  fi
  kill_and_wait KILL 10 "$pid" || die "broker $1 (pid $pid) did not die"
  log "killed broker $1 (pid $pid)"
}

cmd_start_broker() {
  [[ $# -eq 1 ]] || die "usage: scripts/kafka.sh start-broker ID"
  find_java
  lock_state
  load_env || die "no cluster in $STATE_DIR"
  check_id "$1"
  cache_complete || die "jar cache $CACHE_DIR is incomplete"
  local id="$1" pid
  if pid="$(broker_pid "$id")"; then
    log "broker $id is already running (pid $pid)"
    return 0
  fi
  local p
  for p in "${BROKER_PORTS[id]}" "${CONTROLLER_PORTS[id]}"; do
    ! port_in_use "$p" || die "port $p of broker $id is taken by another process"
  done
  start_broker_process "$id"
  local rc=0
  wait_ready "$id" || rc=$?
  ((rc == 0)) || die "broker $id did not come back (log: $LOG_DIR/broker-$id.log)"
  log "broker $id is back"
}

cmd_run_class() {
  [[ $# -ge 1 ]] || die "usage: scripts/kafka.sh run-class CLASS [ARGS...]"
  find_java
  cache_complete || die "jar cache $CACHE_DIR is incomplete; run 'scripts/kafka.sh up' first"
  mkdir -p "$STATE_DIR"
  [[ -f "$STATE_DIR/log4j2-tools.properties" ]] || write_log4j_configs
  run_class "$@"
}

main() {
  local cmd="${1:-}"
  (($#)) && shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    stop-broker) cmd_stop_broker "$@" ;;
    start-broker) cmd_start_broker "$@" ;;
    run-class) cmd_run_class "$@" ;;
    -h | --help | help)
      usage
      ;;
    *)
      usage
      exit 64
      ;;
  esac
}

main "$@"
