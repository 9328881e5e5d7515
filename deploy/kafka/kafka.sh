#!/usr/bin/env bash
# Local Apache Kafka (KRaft) without Docker: jars from Maven Central, plain JVM processes.
#
#   kafka.sh fetch                         download the broker classpath once (needs java 17+, mvn)
#   kafka.sh up [single|cluster]           start 1 broker (default) or a 3-broker cluster, wait until it answers
#   kafka.sh down [single|cluster|all] [--wipe]
#                                          stop (SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT s); --wipe deletes data
#   kafka.sh status [single|cluster|all]   show processes and whether the brokers answer
#   kafka.sh bootstrap [single|cluster]    print the bootstrap servers string
#   kafka.sh version                       print the Kafka version pinned in pom.xml
#
# Everything is written below $ROOT/.cache/kafka (jars, Maven repo) and $ROOT/.data/kafka/<mode>
# (config, data, logs, pid files) unless overridden. See deploy/README.md for the environment variables.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/pom.xml"

log() { printf '[kafka] %s\n' "$*" >&2; }
die() { printf '[kafka] ERROR: %s\n' "$*" >&2; exit 1; }
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

kafka_version() {
    local v
    v="$(sed -n 's:.*<kafka\.version>[[:space:]]*\([^<[:space:]]*\)[[:space:]]*</kafka\.version>.*:\1:p' "$POM" | head -n1)"
    [[ -n "$v" ]] || die "cannot read <kafka.version> from $POM"
    printf '%s\n' "$v"
}

KAFKA_VERSION="$(kafka_version)"
LIBS="${KAFKA_CACHE_DIR:-$ROOT/.cache/kafka/$KAFKA_VERSION/libs}"
M2_REPO="${KAFKA_M2_REPO:-$ROOT/.cache/kafka/m2}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
RUN_MARKER=".bondgenoot-kafka-run"
CDS_DIR="${KAFKA_CDS_DIR:-$ROOT/.cache/kafka/cds}"

# ---------------------------------------------------------------- prerequisites

JAVA=""
JAVA_ID=""
require_java() {
    [[ -n "$JAVA" ]] && return 0
    local j=""
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        j="$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        j="$(command -v java)"
    fi
    [[ -n "$j" ]] || die "Java 17+ is required but 'java' was not found (Debian: apt-get install openjdk-17-jdk-headless)"
    local line major
    line="$("$j" -version 2>&1 | grep -m1 -i 'version' || true)"
    major="$(sed -n 's/.*version "\([0-9][0-9]*\)\(\.\([0-9][0-9]*\)\)\{0,1\}.*/\1 \3/p' <<<"$line")"
    # "1.8.0_x" style -> major is the second component
    if [[ "${major%% *}" == "1" ]]; then major="${major#* }"; else major="${major%% *}"; fi
    [[ "$major" =~ ^[0-9]+$ ]] || die "Java 17+ is required but the version of '$j' could not be determined ($line)"
    (( major >= 17 )) || die "Java 17+ is required but '$j' is Java $major (Debian: apt-get install openjdk-17-jdk-headless)"
    JAVA="$j"
    JAVA_ID="$(readlink -f "$j") $line"
}

require_mvn() {
    command -v mvn >/dev/null 2>&1 \
        || die "Maven (mvn) is required to download the Kafka jars but was not found (Debian: apt-get install maven)"
}

libs_ok() { compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null && compgen -G "$LIBS/kafka-clients-*.jar" >/dev/null; }

cmd_fetch() {
    require_java
    if libs_ok; then
        return 0
    fi
    require_mvn
    local parent t0
    parent="$(dirname "$LIBS")"
    mkdir -p "$parent"
    exec 8>"$parent/.fetch.lock"
    flock -w 900 8 || die "timed out waiting for another fetch ($parent/.fetch.lock)"
    if libs_ok; then exec 8>&-; return 0; fi   # another process fetched meanwhile
    [[ -e "$LIBS" ]] && die "$LIBS exists but holds no Kafka jars; remove it and retry"
    t0="$(now)"
    log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS (once) ..."
    local tmp="$LIBS.tmp.$$"
    rm -rf "$tmp"
    # (maven 3.8 -q still prints bare ANSI resets; strip them)
    if ! mvn -q -B -f "$POM" -Dmaven.repo.local="$M2_REPO" \
            dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 \
            | sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d' >&2; then
        rm -rf "$tmp"
        die "mvn dependency:copy-dependencies failed"
    fi
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || { rm -rf "$tmp"; die "download finished but no kafka_2.13 jar in $tmp"; }
    mv -T "$tmp" "$LIBS"
    exec 8>&-
    log "fetched $(ls "$LIBS" | wc -l) jars in $(elapsed "$t0")s"
}

# ---------------------------------------------------------------- layout

check_mode() {
    case "$1" in
        single|cluster) ;;
        *) die "unknown mode '$1' (expected single or cluster)" ;;
    esac
}

run_dir() { printf '%s\n' "${KAFKA_RUN_DIR:-$ROOT/.data/kafka/$1}"; }

# node ids of a mode
nodes() { if [[ "$1" == single ]]; then echo 1; else echo 1 2 3; fi; }

# node_dir MODE ID
node_dir() {
    local d; d="$(run_dir "$1")"
    if [[ "$1" == single ]]; then printf '%s\n' "$d"; else printf '%s/node%s\n' "$d" "$2"; fi
}

# Cluster ports: 19092/29092/39092 (controllers +1), or, with KAFKA_CLUSTER_BASE_PORT=B, node N listens
# on B+10(N-1) and its controller on the port after it (a second cluster beside the default one).
broker_port() {
    if [[ "$1" == single ]]; then echo "${KAFKA_PORT:-9092}"
    elif [[ -n "${KAFKA_CLUSTER_BASE_PORT:-}" ]]; then echo $(( KAFKA_CLUSTER_BASE_PORT + 10 * ($2 - 1) ))
    else echo $(( $2 * 10000 + 9092 )); fi
}
controller_port() {
    if [[ "$1" == single ]]; then echo "${KAFKA_CONTROLLER_PORT:-9093}"
    else echo $(( $(broker_port "$1" "$2") + 1 )); fi
}
# KAFKA_PROXIED_LISTENER=1 adds a listener PROXIED on broker port + 2 that advertises broker port + 3:
# clients that bootstrap there are told to connect to +3, where a fault-injecting proxy forwards to +2
# (tests/chaos). Kafka answers metadata per listener, so only those clients take the detour.
proxied_port() { echo $(( $(broker_port "$1" "$2") + 2 )); }
proxied_advertised_port() { echo $(( $(broker_port "$1" "$2") + 3 )); }
proxied() { [[ "${KAFKA_PROXIED_LISTENER:-0}" == 1 ]]; }

node_ports() {  # MODE ID -> the ports a node listens on
    local ports
    ports="$(broker_port "$1" "$2") $(controller_port "$1" "$2")"
    if proxied; then ports+=" $(proxied_port "$1" "$2")"; fi
    printf '%s\n' "$ports"
}

bootstrap_servers() {
    local mode="$1" out="" id
    for id in $(nodes "$mode"); do out+="${out:+,}127.0.0.1:$(broker_port "$mode" "$id")"; done
    printf '%s\n' "$out"
}

write_log4j() {  # DIR
    local dir="$1"
    mkdir -p "$dir/logs"
    cat >"$dir/log4j2.properties" <<EOF
# generated by deploy/kafka/kafka.sh -- all output goes to files, the console stays quiet
status = warn
name = kafka-local
# Kafka shuts down in its own JVM shutdown hook; log4j's hook would close the file first and lose those lines
shutdownHook = disable
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $dir/logs/server.log
appender.file.filePattern = $dir/logs/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.zk.name = org.apache.zookeeper
logger.zk.level = WARN
EOF
}

write_server_properties() {  # MODE ID
    local mode="$1" id="$2" dir bport cport
    dir="$(node_dir "$mode" "$id")"
    bport="$(broker_port "$mode" "$id")"
    cport="$(controller_port "$mode" "$id")"
    mkdir -p "$dir/data"
    {
        echo "# generated by deploy/kafka/kafka.sh ($mode mode) -- rewritten on every 'up'"
        echo "process.roles=broker,controller"
        echo "node.id=$id"
        if [[ "$mode" == single ]]; then
            echo "controller.quorum.bootstrap.servers=127.0.0.1:$cport"
        else
            echo "controller.quorum.voters=1@127.0.0.1:$(controller_port "$mode" 1),2@127.0.0.1:$(controller_port "$mode" 2),3@127.0.0.1:$(controller_port "$mode" 3)"
        fi
        if proxied; then
            echo "listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport,PROXIED://127.0.0.1:$(proxied_port "$mode" "$id")"
            echo "advertised.listeners=PLAINTEXT://127.0.0.1:$bport,PROXIED://127.0.0.1:$(proxied_advertised_port "$mode" "$id")"
            echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PROXIED:PLAINTEXT"
        else
            echo "listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport"
            echo "advertised.listeners=PLAINTEXT://127.0.0.1:$bport"
            echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        fi
        echo "controller.listener.names=CONTROLLER"
        echo "inter.broker.listener.name=PLAINTEXT"
        echo "log.dirs=$dir/data"
        echo "num.partitions=3"
        echo "auto.create.topics.enable=false"
        echo "delete.topic.enable=true"
        echo "group.initial.rebalance.delay.ms=0"
        echo "offsets.topic.num.partitions=10"
        echo "transaction.state.log.num.partitions=10"
        if [[ "$mode" == single ]]; then
            echo "default.replication.factor=1"
            echo "min.insync.replicas=1"
            echo "offsets.topic.replication.factor=1"
            echo "transaction.state.log.replication.factor=1"
            echo "transaction.state.log.min.isr=1"
            echo "share.coordinator.state.topic.replication.factor=1"
            echo "share.coordinator.state.topic.min.isr=1"
        else
            echo "default.replication.factor=3"
            echo "min.insync.replicas=2"
            echo "offsets.topic.replication.factor=3"
            echo "transaction.state.log.replication.factor=3"
            echo "transaction.state.log.min.isr=2"
            echo "share.coordinator.state.topic.replication.factor=3"
            echo "share.coordinator.state.topic.min.isr=2"
        fi
        echo "num.network.threads=2"
        echo "num.io.threads=4"
        echo "log.retention.hours=168"
        echo "log.segment.bytes=104857600"
    } >"$dir/server.properties"
    write_log4j "$dir"
}

# ---------------------------------------------------------------- processes

# pids of the broker JVM(s) running with this node's server.properties
node_pids() {  # MODE ID
    local dir props pid cmd pids=()
    dir="$(node_dir "$1" "$2")"
    props="$dir/server.properties"
    if [[ -f "$dir/kafka.pid" ]]; then
        pid="$(tr -dc '0-9' <"$dir/kafka.pid")"
        if [[ -n "$pid" && -r "/proc/$pid/cmdline" ]]; then
            cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
            [[ "$cmd" == *kafka.Kafka*"$props"* ]] && pids+=("$pid")
        fi
    fi
    # also catch a broker whose pid file got lost (matched on this exact config path only)
    local re
    re="kafka\\.Kafka $(sed 's/[][\.*^$+?(){}|]/\\&/g' <<<"$props")( |\$)"
    while read -r pid; do
        [[ -n "$pid" && " ${pids[*]} " != *" $pid "* ]] && pids+=("$pid")
    done < <(pgrep -f -- "$re" 2>/dev/null || true)
    ((${#pids[@]})) && printf '%s\n' "${pids[@]}"
    return 0
}

port_in_use() {  # PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---- class-data sharing: a JVM class archive of the broker roughly halves JVM+broker start time.
# The first broker started without an archive dumps one when it exits (-XX:ArchiveClassesAtExit) to a
# temp file; it is validated and promoted on the next down/up. The name fingerprints the JVM and the jars,
# so a new JDK or re-fetched jars simply produce a new archive. KAFKA_CDS=0 disables all of this.

cds_enabled() { [[ "${KAFKA_CDS:-1}" != 0 ]]; }

cds_archive() {
    local fp
    fp="$({ printf '%s\n' "$JAVA_ID"; stat -c '%n %s %Y' "$LIBS"/*.jar; } | cksum | cut -d' ' -f1)"
    printf '%s/kafka-%s-%s.jsa\n' "$CDS_DIR" "$KAFKA_VERSION" "$fp"
}

cds_dump_running() {  # ARCHIVE -> true while some broker will still write a candidate for it
    pgrep -f -- "-XX:ArchiveClassesAtExit=$(sed 's/[][\.*^$+?(){}|]/\\&/g' <<<"$1")\.tmp\." >/dev/null 2>&1
}

cds_promote() {  # validate finished candidates; keep the first good one
    cds_enabled || return 0
    if [[ -z "$JAVA" ]]; then ( require_java ) >/dev/null 2>&1 || return 0; require_java; fi
    local jsa cand
    jsa="$(cds_archive)"
    for cand in "$jsa".tmp.*; do
        [[ -e "$cand" ]] || continue
        pgrep -f -- "-XX:ArchiveClassesAtExit=$(sed 's/[][\.*^$+?(){}|]/\\&/g' <<<"$cand")( |\$)" >/dev/null 2>&1 && continue
        # a damaged archive crashes the JVM (even with -Xshare:auto), so only a verified one is promoted
        if [[ ! -e "$jsa" ]] && "$JAVA" -Xshare:on -XX:SharedArchiveFile="$cand" -XX:+VerifySharedSpaces \
                -XX:-CreateCoredumpOnCrash -XX:ErrorFile="$CDS_DIR/hs_err_check_%p.log" \
                -cp "$LIBS/*" -version >/dev/null 2>&1; then
            mv -f "$cand" "$jsa"
        else
            rm -f "$cand" "$CDS_DIR"/hs_err_check_*.log
        fi
    done
}

# JVM flags for the next broker start (one per call): use the archive, or have one broker dump it
cds_flags() {
    cds_enabled || return 0
    local jsa; jsa="$(cds_archive)"
    if [[ -s "$jsa" ]]; then
        printf '%s\n' "-XX:SharedArchiveFile=$jsa"
    elif ! cds_dump_running "$jsa" && [[ -z "${CDS_DUMPER:-}" ]]; then
        mkdir -p "$CDS_DIR"
        CDS_DUMPER=1
        printf '%s\n' "-XX:ArchiveClassesAtExit=$jsa.tmp.$$.$RANDOM"
    fi
}

start_node() {  # MODE ID HEAP [EXTRA_JVM_FLAG]
    local mode="$1" id="$2" heap="$3" extra="${4:-}" dir
    dir="$(node_dir "$mode" "$id")"
    # shellcheck disable=SC2206  # heap options are deliberately split into words
    local -a jvm=(
        $heap
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
        -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15
        -Djava.awt.headless=true
        "-XX:ErrorFile=$dir/logs/hs_err_pid%p.log"
        "-Dkafka.logs.dir=$dir/logs"
        "-Dlog4j2.configurationFile=$dir/log4j2.properties"
    )
    [[ -n "$extra" ]] && jvm+=("$extra")
    # shellcheck disable=SC2206
    [[ -n "${KAFKA_OPTS:-}" ]] && jvm+=(${KAFKA_OPTS})
    rm -f "$dir/kafka.pid"
    # The inner shell records its own pid and then execs the JVM, so the pid file holds the java pid.
    # setsid detaches it from our session/terminal; nohup guards against SIGHUP.
    setsid nohup bash -c 'echo $$ >"$1"; cd "$2" && shift 2 && exec "$@"' _ "$dir/kafka.pid" "$dir" \
        "$JAVA" "${jvm[@]}" -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
        >"$dir/logs/kafka.out" 2>&1 </dev/null 8>&- 9>&- &
    disown "$!" 2>/dev/null || true
    local _
    for _ in $(seq 1 50); do [[ -s "$dir/kafka.pid" ]] && break; sleep 0.1; done
    [[ -s "$dir/kafka.pid" ]] || die "node $id did not start (see $dir/logs/kafka.out)"
}

format_node() {  # MODE ID CLUSTER_ID
    local mode="$1" id="$2" cid="$3" dir
    dir="$(node_dir "$mode" "$id")"
    local -a args=(format -t "$cid" -c "$dir/server.properties") jvm=()
    [[ "$mode" == single ]] && args+=(--standalone)
    if cds_enabled && [[ -s "$(cds_archive)" ]]; then jvm+=("-XX:SharedArchiveFile=$(cds_archive)"); fi
    if ! cd "$dir" || ! "$JAVA" "${jvm[@]}" -Xmx256m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
            "-Dlog4j2.configurationFile=$dir/log4j2.properties" "-Dkafka.logs.dir=$dir/logs" \
            -cp "$LIBS/*" kafka.tools.StorageTool "${args[@]}" >"$dir/logs/format.out" 2>&1 9>&-; then
        cat "$dir/logs/format.out" >&2
        return 1
    fi
}

new_cluster_id() {  # same shape as Kafka's Uuid.randomUuid().toString(): 16 random bytes, url-safe base64, no padding
    local id
    while :; do
        id="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" != -* ]] && break
    done
    printf '%s\n' "$id"
}

resolve_python() {
    if [[ -n "${PYTHON:-}" ]]; then printf '%s\n' "$PYTHON"
    elif [[ -x "$ROOT/.venv/bin/python" ]]; then printf '%s\n' "$ROOT/.venv/bin/python"
    else command -v python3 || true
    fi
}

# Waits until the cluster answers a metadata request with >= WANT registered brokers.
# exit: 0 ready, 1 timeout, 2 aiokafka unavailable, 3 a broker process died
read -r -d '' PROBE_PY <<'PYEOF' || true
import asyncio, logging, os, sys, time
logging.disable(logging.CRITICAL)
try:
    from aiokafka.admin import AIOKafkaAdminClient
except Exception:
    sys.exit(2)

bootstrap, want, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
pids = [int(p) for p in sys.argv[4:]]

def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True

async def probe():
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, retry_backoff_ms=100)
    try:
        await asyncio.wait_for(admin.start(), 5)
        return await asyncio.wait_for(admin.describe_cluster(), 5)
    finally:
        try:
            await admin.close()
        except Exception:
            pass

async def main():
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        dead = [p for p in pids if not alive(p)]
        if dead:
            print(f"broker process(es) {dead} exited", file=sys.stderr)
            return 3
        try:
            info = await probe()
            ids = sorted(b["node_id"] for b in info.get("brokers", []))
            if len(ids) >= want:
                print(f"cluster_id={info.get('cluster_id')} controller={info.get('controller_id')} brokers={ids}")
                return 0
            last = f"{len(ids)}/{want} brokers registered"
        except Exception as e:  # connection refused, timeouts, ... while starting
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            print(f"no ready cluster after {timeout:.0f}s: {last}", file=sys.stderr)
            return 1
        await asyncio.sleep(0.2)

sys.exit(asyncio.run(main()))
PYEOF

# Fallback without aiokafka: every node logs "Kafka Server started" and its port accepts connections.
wait_ready_fallback() {  # MODE TIMEOUT
    local mode="$1" timeout="$2" deadline id dir ok
    deadline=$(( SECONDS + ${timeout%.*} ))
    while :; do
        ok=1
        for id in $(nodes "$mode"); do
            dir="$(node_dir "$mode" "$id")"
            [[ -n "$(node_pids "$mode" "$id")" ]] || { log "node $id is not running"; return 3; }
            if ! grep -q 'Kafka Server started' "$dir/logs/server.log" 2>/dev/null \
                    || ! port_in_use "$(broker_port "$mode" "$id")"; then
                ok=0
            fi
        done
        (( ok )) && { echo "brokers=[$(nodes "$mode" | tr ' ' ',')] (log-based check)"; return 0; }
        (( SECONDS >= deadline )) && { log "no ready cluster after ${timeout}s"; return 1; }
        sleep 0.3
    done
}

wait_ready() {  # MODE TIMEOUT -> prints a one-line cluster description
    local mode="$1" timeout="$2" py rc=0 id
    local -a pids=()
    # pids from the pid files (written before the JVM starts), so a JVM that already died is noticed
    local pf
    for id in $(nodes "$mode"); do
        pf="$(node_dir "$mode" "$id")/kafka.pid"
        [[ -s "$pf" ]] && pids+=("$(tr -dc '0-9' <"$pf")")
    done
    py="$(resolve_python)"
    if [[ -n "$py" ]]; then
        "$py" -c "$PROBE_PY" "$(bootstrap_servers "$mode")" "$(nodes "$mode" | wc -w)" "$timeout" "${pids[@]}" || rc=$?
        [[ $rc -ne 2 ]] && return $rc
    fi
    wait_ready_fallback "$mode" "$timeout"
}

running_version() {  # MODE -> version the broker logged at start, else the jar on the classpath
    local dir v
    dir="$(node_dir "$1" 1)"
    v="$(grep -ho 'Kafka version: [^ ]*' "$dir/logs/server.log" 2>/dev/null | tail -n1 | awk '{print $3}')"
    if [[ -z "$v" ]]; then
        v="$(basename "$(compgen -G "$LIBS/kafka-clients-*.jar" | head -n1)" .jar)"
        v="${v#kafka-clients-}"
    fi
    printf '%s\n' "$v"
}

lock_run_dir() {  # MODE
    local d; d="$(run_dir "$1")"
    mkdir -p "$d"
    # (lock file name differs from early versions whose brokers inherited the old .lock descriptor)
    exec 9>"$d/.kafka-sh.lock"
    flock -w 180 9 || die "another kafka.sh is busy with $d"
}

# ---------------------------------------------------------------- up

cmd_up() {
    local mode="${1:-single}" t0 d heap id dir
    check_mode "$mode"
    t0="$(now)"
    cmd_fetch
    d="$(run_dir "$mode")"
    lock_run_dir "$mode"
    touch "$d/$RUN_MARKER"

    if [[ "$mode" == single ]]; then heap="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
    else heap="${KAFKA_HEAP_OPTS:--Xmx384m -Xms192m}"; fi

    # already up?
    local -a missing=()
    for id in $(nodes "$mode"); do
        [[ -n "$(node_pids "$mode" "$id")" ]] || missing+=("$id")
    done
    if (( ${#missing[@]} == 0 )); then
        local info
        if info="$(wait_ready "$mode" "$START_TIMEOUT")"; then
            echo "Kafka $(running_version "$mode") ($mode) already running: bootstrap=$(bootstrap_servers "$mode") $info"
            return 0
        fi
        die "Kafka ($mode) processes are running but do not answer; try: $0 down $mode"
    fi

    # ports of the nodes we are about to start must be free
    for id in "${missing[@]}"; do
        local p
        for p in $(node_ports "$mode" "$id"); do
            port_in_use "$p" && die "port $p is already in use by another process (see: ss -ltnp 'sport = :$p')"
        done
    done

    # config + one-time storage format (the cluster id is kept in the run dir)
    local cid ports_now ports_then
    [[ -s "$d/cluster.id" ]] || new_cluster_id >"$d/cluster.id"
    cid="$(<"$d/cluster.id")"
    local -a fmt_pids=()
    for id in "${missing[@]}"; do
        dir="$(node_dir "$mode" "$id")"
        ports_now="$(node_ports "$mode" "$id")"
        if [[ -f "$dir/data/meta.properties" && -f "$dir/ports" ]]; then
            ports_then="$(<"$dir/ports")"
            [[ "$ports_now" == "$ports_then" ]] \
                || die "$dir was formatted for ports '$ports_then' but now '$ports_now'; run '$0 down $mode --wipe' first"
        fi
        write_server_properties "$mode" "$id"
        echo "$ports_now" >"$dir/ports"
        if [[ ! -f "$dir/data/meta.properties" ]]; then
            format_node "$mode" "$id" "$cid" &
            fmt_pids+=($!)
        fi
    done
    if (( ${#fmt_pids[@]} )); then
        log "formatting storage (cluster id $cid) ..."
        local fp
        for fp in "${fmt_pids[@]}"; do wait "$fp" || die "storage format failed (see $d)"; done
    fi

    log "starting $mode broker(s): $(bootstrap_servers "$mode") ..."
    require_java
    cds_promote
    local cds info rc attempt used_cds
    for attempt in 1 2; do
        used_cds=0
        for id in "${missing[@]}"; do
            cds="$(cds_flags)"
            [[ "$cds" == *ArchiveClassesAtExit* ]] && CDS_DUMPER=1
            [[ "$cds" == *SharedArchiveFile* ]] && used_cds=1
            start_node "$mode" "$id" "$heap" "$cds"
        done
        rc=0
        info="$(wait_ready "$mode" "$START_TIMEOUT")" || rc=$?
        # a broker that dies at once while mapping the class archive: drop the archive, start plainly
        if (( rc == 3 && used_cds && attempt == 1 )); then
            log "a broker exited during start while using the class archive; retrying without it"
            stop_mode "$mode" || true
            rm -f "$(cds_archive)"
            KAFKA_CDS=0
            read -r -a missing <<<"$(nodes "$mode")"
            continue
        fi
        break
    done
    if (( rc != 0 )); then
        for id in $(nodes "$mode"); do
            dir="$(node_dir "$mode" "$id")"
            log "---- node $id: tail of $dir/logs/server.log"
            tail -n 25 "$dir/logs/server.log" >&2 2>/dev/null || true
            tail -n 10 "$dir/logs/kafka.out" >&2 2>/dev/null || true
        done
        log "start failed; stopping what was started"
        stop_mode "$mode"
        exit 1
    fi
    echo "Kafka $(running_version "$mode") ($mode) up in $(elapsed "$t0")s: bootstrap=$(bootstrap_servers "$mode") $info"
    echo "logs: $d"
}

# ---------------------------------------------------------------- down

stop_mode() {  # MODE -> stops every node of the mode; returns 0 when nothing is left running
    local mode="$1" id deadline
    local -a pids=()
    for id in $(nodes "$mode"); do
        while read -r p; do [[ -n "$p" ]] && pids+=("$p"); done < <(node_pids "$mode" "$id")
    done
    if (( ${#pids[@]} )); then
        log "stopping $mode broker(s): pid ${pids[*]} ..."
        kill -TERM "${pids[@]}" 2>/dev/null || true
        deadline=$(( SECONDS + STOP_TIMEOUT ))
        local -a alive
        while :; do
            alive=()
            for p in "${pids[@]}"; do
                if kill -0 "$p" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]]; then
                    alive+=("$p")
                fi
            done
            (( ${#alive[@]} == 0 )) && break
            if (( SECONDS >= deadline )); then
                log "still running after ${STOP_TIMEOUT}s, sending SIGKILL to ${alive[*]}"
                kill -KILL "${alive[@]}" 2>/dev/null || true
                local _
                for _ in $(seq 1 50); do
                    local any=0
                    for p in "${alive[@]}"; do kill -0 "$p" 2>/dev/null && any=1; done
                    (( any )) || break
                    sleep 0.1
                done
                break
            fi
            sleep 0.2
        done
    fi
    for id in $(nodes "$mode"); do rm -f "$(node_dir "$mode" "$id")/kafka.pid"; done
    local left=0
    for id in $(nodes "$mode"); do [[ -n "$(node_pids "$mode" "$id")" ]] && left=1; done
    (( left == 0 )) || { log "WARNING: some $mode broker processes are still running"; return 1; }
    return 0
}

cmd_down() {
    local target="all" wipe=0 arg
    for arg in "$@"; do
        case "$arg" in
            --wipe) wipe=1 ;;
            single|cluster|all) target="$arg" ;;
            *) die "usage: $0 down [single|cluster|all] [--wipe]" ;;
        esac
    done
    local -a modes
    if [[ "$target" == all ]]; then modes=(single cluster); else modes=("$target"); fi
    local mode d rc=0
    for mode in "${modes[@]}"; do
        d="$(run_dir "$mode")"
        [[ -d "$d" ]] || continue
        lock_run_dir "$mode"
        stop_mode "$mode" || rc=1
        (( rc == 0 )) && libs_ok && cds_promote
        if (( wipe )) && (( rc == 0 )) && [[ -d "$d" ]]; then
            if [[ -f "$d/$RUN_MARKER" ]]; then
                rm -rf "$d"
                log "wiped $d"
            else
                log "not wiping $d: it was not created by kafka.sh (no $RUN_MARKER)"
            fi
        fi
        exec 9>&-
    done
    (( rc == 0 )) && log "down ($target)"
    return $rc
}

# ---------------------------------------------------------------- status

cmd_status() {
    local target="${1:-all}" mode id any_up=0 dir
    local -a modes
    case "$target" in
        all) modes=(single cluster) ;;
        single|cluster) modes=("$target") ;;
        *) die "usage: $0 status [single|cluster|all]" ;;
    esac
    echo "Kafka $KAFKA_VERSION  jars: $LIBS $(libs_ok && echo '(present)' || echo '(missing: run fetch)')"
    for mode in "${modes[@]}"; do
        local running=0 line=""
        for id in $(nodes "$mode"); do
            dir="$(node_dir "$mode" "$id")"
            local pids; pids="$(node_pids "$mode" "$id" | tr '\n' ' ')"
            if [[ -n "$pids" ]]; then
                running=$((running + 1))
                line+="  node $id: running pid ${pids% } broker 127.0.0.1:$(broker_port "$mode" "$id") controller 127.0.0.1:$(controller_port "$mode" "$id")"$'\n'
            else
                line+="  node $id: stopped"$'\n'
            fi
        done
        if (( running )); then
            local info
            if info="$(wait_ready "$mode" 5 2>/dev/null)"; then
                echo "$mode: UP ($running/$(nodes "$mode" | wc -w) processes) bootstrap=$(bootstrap_servers "$mode") $info"
                any_up=1
            else
                echo "$mode: NOT ANSWERING ($running/$(nodes "$mode" | wc -w) processes) run dir $(run_dir "$mode")"
            fi
            printf '%s' "$line"
        else
            echo "$mode: down (run dir $(run_dir "$mode"))"
        fi
    done
    (( any_up )) && return 0 || return 3
}

# ---------------------------------------------------------------- main

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        fetch) cmd_fetch; echo "Kafka $KAFKA_VERSION jars: $LIBS" ;;
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        status) cmd_status "$@" ;;
        bootstrap) local m="${1:-single}"; check_mode "$m"; bootstrap_servers "$m" ;;
        version) echo "$KAFKA_VERSION" ;;
        -h|--help|help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

# on one line so bash has parsed the exit before running: editing this file while it runs stays harmless
main "$@"; exit $?
