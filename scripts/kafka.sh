#!/usr/bin/env bash
# A development Apache Kafka (KRaft) on loopback, resolved from Maven Central.
#
#   scripts/kafka.sh start  [--nodes 1|3] [--data DIR]   # prints "bootstrap 127.0.0.1:PORT[,...]"
#   scripts/kafka.sh status [--data DIR]                 # exit 0 running, 3 stopped, 1 partly up
#   scripts/kafka.sh stop   [--data DIR] [--wipe]        # SIGTERM, then SIGKILL after 30 s
#
# Kafka and its runtime dependencies are copied once by `mvn dependency:copy-dependencies`
# into ${XDG_CACHE_HOME:-$HOME/.cache}/model-registry/kafka-$KAFKA_VERSION (outside the
# repository; a second run downloads nothing). Each node is a combined broker+controller
# JVM (-Xmx512m by default, KAFKA_HEAP to change) listening on free 127.0.0.1 ports only.
# The data dir holds each node's config, storage, logs and pid file; `start` on a data dir
# that holds a stopped cluster starts it again with the same ports and data, `stop --wipe`
# deletes it. With --nodes 3: replication factor 3 and min.insync.replicas=2 by default.
#
# Why this version: README.md#running-against-a-real-kafka.
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
SCALA_VERSION=2.13
LOG4J_VERSION=2.25.5
SLF4J_VERSION=2.0.17
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/model-registry/kafka-$KAFKA_VERSION"
LIB="$CACHE/lib"
DATA="${KAFKA_DATA_DIR:-${TMPDIR:-/tmp}/model-registry-kafka}"
NODES=1
WIPE=0
HEAP="${KAFKA_HEAP:--Xms128m -Xmx512m}"
PY="$(command -v python3.11 || command -v python3)"

die() { echo "kafka.sh: $*" >&2; exit 2; }
say() { echo "kafka.sh: $*" >&2; }

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# ------------------------------------------------------------------ resolution (Maven)

resolve() {
    [[ -f "$LIB/.resolved" ]] && return 0
    command -v mvn >/dev/null || die "mvn is needed to fetch Kafka $KAFKA_VERSION (apt-get install maven)"
    command -v java >/dev/null || die "java (17+) is needed to run Kafka"
    mkdir -p "$CACHE"
    cat >"$CACHE/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.model-registry</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_$SCALA_VERSION</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- logging to files: slf4j 2 bound to log4j2 -->
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$SLF4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
    say "resolving Apache Kafka $KAFKA_VERSION with Maven into $LIB (once)"
    local tmp="$CACHE/lib.tmp.$$"
    rm -rf "$tmp"
    if ! mvn -B -q -f "$CACHE/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$CACHE/mvn.log" 2>&1; then
        rm -rf "$tmp"
        tail -20 "$CACHE/mvn.log" >&2
        die "Maven could not resolve org.apache.kafka:kafka_$SCALA_VERSION:$KAFKA_VERSION (log: $CACHE/mvn.log)"
    fi
    echo "$KAFKA_VERSION" >"$tmp/.resolved"
    rm -rf "$LIB"
    mv "$tmp" "$LIB"
}

# ------------------------------------------------------------------ helpers

free_ports() {  # N ports free on 127.0.0.1 at the same moment
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

cluster_id() {  # a Kafka Uuid: 16 random bytes, base64url without padding, not starting with '-'
    "$PY" -c '
import base64, os
while True:
    u = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not u.startswith("-"):
        print(u)
        break'
}

brokers_seen() {  # how many unfenced brokers the node at $1 lists in a Metadata (v4) answer
    "$PY" - "$1" <<'EOF'
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
req = struct.pack(">hhih", 3, 4, 7, -1) + struct.pack(">i?", 0, False)  # Metadata v4, no topics
try:
    with socket.create_connection((host, int(port)), timeout=2) as s:
        s.settimeout(2)
        s.sendall(struct.pack(">i", len(req)) + req)
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        buf = s.recv(size, socket.MSG_WAITALL)
    # correlation id, throttle_time_ms, then the brokers array
    print(struct.unpack(">i", buf[8:12])[0])
except (OSError, struct.error):
    print(0)
EOF
}

pid_of() {  # the pid recorded for node $1, if that process is our JVM on this data dir
    local f="$DATA/node-$1/kafka.pid" pid
    [[ -f "$f" ]] || return 1
    pid="$(cat "$f")"
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$DATA/node-$1/server.properties" || return 1
    echo "$pid"
}

nodes_recorded() {
    [[ -f "$DATA/cluster.env" ]] || return 1
    # shellcheck disable=SC1091
    (source "$DATA/cluster.env" && echo "$NODES")
}

bootstrap_of() {
    # shellcheck disable=SC1091
    (source "$DATA/cluster.env" && echo "$BOOTSTRAP")
}

# ------------------------------------------------------------------ configuration

write_configs() {
    local n=$NODES ports voters="" bootstrap="" i
    read -r -a ports <<<"$(free_ports $((2 * n)))"
    local rf=$n isr=$((n > 1 ? 2 : 1))
    for ((i = 1; i <= n; i++)); do
        voters+="${voters:+,}$i@127.0.0.1:${ports[$((2 * i - 1))]}"
        bootstrap+="${bootstrap:+,}127.0.0.1:${ports[$((2 * i - 2))]}"
    done
    for ((i = 1; i <= n; i++)); do
        local dir="$DATA/node-$i"
        mkdir -p "$dir/data"
        cat >"$dir/server.properties" <<EOF
# node $i of $n, written by scripts/kafka.sh
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:${ports[$((2 * i - 2))]},CONTROLLER://127.0.0.1:${ports[$((2 * i - 1))]}
advertised.listeners=PLAINTEXT://127.0.0.1:${ports[$((2 * i - 2))]}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
# the registry creates its topics; a typo must not create one
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
# \`stop\` takes every node down at once: a controlled shutdown would wait for a controller
# quorum that is going away (minutes with 3 nodes). Logs are flushed and closed all the same.
controlled.shutdown.enable=false
# small: a 2-core machine, thousands of short-lived test partitions
num.network.threads=2
num.io.threads=4
background.threads=4
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.index.size.max.bytes=1048576
EOF
        cat >"$dir/log4j2.properties" <<EOF
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $dir/server.log
appender.file.filePattern = $dir/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = ${KAFKA_LOG_LEVEL:-warn}
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka.server.KafkaServer
logger.kafka.level = info
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = info
EOF
    done
    cat >"$DATA/cluster.env" <<EOF
NODES=$n
BOOTSTRAP=$bootstrap
KAFKA_VERSION=$KAFKA_VERSION
EOF
}

format_storage() {
    local cid i pids=()
    cid="$(cluster_id)"
    for ((i = 1; i <= NODES; i++)); do
        java -Xmx256m -XX:TieredStopAtLevel=1 -cp "$LIB/*" \
            -Dlog4j2.configurationFile="$DATA/node-$i/log4j2.properties" \
            kafka.tools.StorageTool format -t "$cid" -c "$DATA/node-$i/server.properties" \
            >"$DATA/node-$i/format.log" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { cat "$DATA/node-$((i + 1))/format.log" >&2; die "formatting node $((i + 1)) failed"; }
    done
}

# ------------------------------------------------------------------ commands

start() {
    resolve
    mkdir -p "$DATA"
    DATA="$(cd "$DATA" && pwd)"
    local recorded
    if recorded="$(nodes_recorded)"; then
        if [[ "$recorded" != "$NODES" && "$NODES_GIVEN" == 1 ]]; then
            die "$DATA holds a $recorded-node cluster; stop --wipe it or use another --data"
        fi
        NODES=$recorded
        local i running=0
        for ((i = 1; i <= NODES; i++)); do pid_of "$i" >/dev/null && running=$((running + 1)); done
        if ((running == NODES)); then
            say "already running"
            echo "bootstrap $(bootstrap_of)"
            return 0
        fi
        ((running == 0)) || die "$DATA: $running of $NODES nodes running; stop it first"
    else
        write_configs
        format_storage
    fi
    local i
    for ((i = 1; i <= NODES; i++)); do
        local dir="$DATA/node-$i"
        # shellcheck disable=SC2086 # HEAP holds several options
        setsid java $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:ParallelGCThreads=1 \
            -XX:ConcGCThreads=1 -XX:CICompilerCount=2 -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir" \
            -cp "$LIB/*" kafka.Kafka "$dir/server.properties" \
            >"$dir/stdout.log" 2>&1 </dev/null &
        echo $! >"$dir/kafka.pid"
    done
    local bootstrap deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120})) addr ready
    bootstrap="$(bootstrap_of)"
    while :; do
        ready=1
        for ((i = 1; i <= NODES; i++)); do
            if ! pid_of "$i" >/dev/null; then
                tail -30 "$DATA/node-$i/stdout.log" "$DATA/node-$i/server.log" >&2 || true
                stop_nodes
                die "node $i exited during start (logs in $DATA/node-$i)"
            fi
        done
        for addr in ${bootstrap//,/ }; do
            (($(brokers_seen "$addr") == NODES)) || { ready=0; break; }
        done
        ((ready)) && break
        if ((SECONDS > deadline)); then
            stop_nodes
            die "Kafka did not answer within ${KAFKA_START_TIMEOUT:-120}s (logs in $DATA/node-*)"
        fi
        sleep 0.3
    done
    say "Apache Kafka $KAFKA_VERSION, $NODES node(s), data in $DATA"
    echo "bootstrap $bootstrap"
}

stop_nodes() {
    local i pid pids=() deadline
    for ((i = 1; i <= NODES; i++)); do
        if pid="$(pid_of "$i")"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    deadline=$((SECONDS + ${KAFKA_STOP_TIMEOUT:-30}))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            say "pid $pid did not stop in ${KAFKA_STOP_TIMEOUT:-30}s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
    done
    for ((i = 1; i <= NODES; i++)); do rm -f "$DATA/node-$i/kafka.pid"; done
}

stop() {
    [[ -d "$DATA" ]] || { say "nothing at $DATA"; return 0; }
    DATA="$(cd "$DATA" && pwd)"
    if NODES="$(nodes_recorded)"; then
        stop_nodes
        say "stopped"
    fi
    if ((WIPE)); then
        rm -rf "$DATA"
        say "deleted $DATA"
    fi
}

status() {
    [[ -d "$DATA" ]] && NODES="$(nodes_recorded)" || { echo "stopped (nothing at $DATA)"; exit 3; }
    DATA="$(cd "$DATA" && pwd)"
    local i running=0
    for ((i = 1; i <= NODES; i++)); do
        if pid="$(pid_of "$i")"; then
            echo "node $i: running, pid $pid"
            running=$((running + 1))
        else
            echo "node $i: stopped"
        fi
    done
    ((running == 0)) && exit 3
    echo "bootstrap $(bootstrap_of)"
    ((running == NODES)) || exit 1
}

# ------------------------------------------------------------------ arguments

[[ $# -ge 1 ]] || usage
COMMAND="$1"
shift
NODES_GIVEN=0
while [[ $# -gt 0 ]]; do
    case "$1" in
    --nodes)
        [[ "${2:-}" =~ ^[1-9]$ ]] || die "--nodes takes a count from 1 to 9"
        NODES="$2"; NODES_GIVEN=1; shift 2 ;;
    --data)
        [[ -n "${2:-}" ]] || die "--data takes a directory"
        DATA="$2"; shift 2 ;;
    --wipe) WIPE=1; shift ;;
    -h | --help) usage ;;
    *) die "unknown argument: $1" ;;
    esac
done

case "$COMMAND" in
start) start ;;
stop) stop ;;
status) status ;;
*) usage ;;
esac
