#!/usr/bin/env bash
# Kafka for docker-compose.yml with authentication and authorisation (docs/security.md):
#
#   * the client listeners (PLAINTEXT, kafka:9092 — named so for compatibility — and EXTERNAL,
#     localhost:29092) speak SASL_PLAINTEXT with SCRAM-SHA-512; the controller listener stays on the
#     container's loopback;
#   * one SCRAM user per service (registry, projects, calls, matching, alerts, consortia) and per integrator;
#   * StandardAuthorizer ACLs: each service may write only the topics it owns and read only those
#     it consumes; integrators may read only the public topics (companies.v1, projects.v1, calls.v1,
#     suggestions.v1) with consumer groups named "integrator-<name>.<anything>".
#
# server.properties is written from the KAFKA_* variables as the apache/kafka image does
# (KAFKA_FOO_BAR -> foo.bar). Storage is formatted once with the SCRAM "admin" user (the broker's
# own, a super user); the other users and the ACLs are (re)applied at every start, so adding an
# integrator or changing a password is: edit the environment, restart the container.
#
# Secrets (all required, letters, digits, "-" and "_" only):
#   BONDGENOOT_KAFKA_ADMIN_PASSWORD, BONDGENOOT_KAFKA_<SERVICE>_PASSWORD for each service,
#   BONDGENOOT_KAFKA_INTEGRATORS="name:password,name2:password2" (may be empty).
set -euo pipefail

KAFKA_HOME=${KAFKA_HOME:-/opt/kafka}
WORK=${BONDGENOOT_KAFKA_WORK:-/tmp/bondgenoot-kafka}
BOOTSTRAP=${BONDGENOOT_KAFKA_ADMIN_BOOTSTRAP:-localhost:9092}
SERVICES=(registry projects calls matching alerts consortia)
PUBLIC_TOPICS=(companies.v1 projects.v1 calls.v1 suggestions.v1)
MECHANISM=SCRAM-SHA-512

log() { echo "[compose-sasl] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

secret() {  # secret VAR: the value of VAR, which must be set and safe inside SCRAM and JAAS syntax
  local name=$1 value=${!1:-}
  [[ -n $value ]] || die "$name is not set (see docs/security.md)"
  [[ $value =~ ^[A-Za-z0-9_-]{16,}$ ]] || die "$name must be 16+ characters of [A-Za-z0-9_-]"
  printf '%s' "$value"
}

ADMIN_PASSWORD=$(secret BONDGENOOT_KAFKA_ADMIN_PASSWORD)
declare -A PASSWORD=()
for service in "${SERVICES[@]}"; do
  PASSWORD[$service]=$(secret "BONDGENOOT_KAFKA_${service^^}_PASSWORD")
done
INTEGRATORS=()
IFS=',' read -r -a pairs <<<"${BONDGENOOT_KAFKA_INTEGRATORS:-}"
for pair in "${pairs[@]}"; do
  pair=${pair//[[:space:]]/}
  [[ -z $pair ]] && continue
  name=${pair%%:*}
  [[ $name =~ ^[a-z0-9][a-z0-9-]{0,40}$ && $pair == *:* ]] || die "BONDGENOOT_KAFKA_INTEGRATORS: bad entry for ${name:-?}"
  BONDGENOOT_KAFKA_INTEGRATOR_PASSWORD=${pair#*:}
  PASSWORD["integrator-$name"]=$(secret BONDGENOOT_KAFKA_INTEGRATOR_PASSWORD)
  INTEGRATORS+=("integrator-$name")
done
unset BONDGENOOT_KAFKA_INTEGRATOR_PASSWORD

umask 077
mkdir -p "$WORK"
rm -f "$WORK/ready"
PROPS="$WORK/server.properties"
ADMIN_CONFIG="$WORK/admin.properties"
JAAS="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$ADMIN_PASSWORD\";"

# ---- server.properties from KAFKA_* (not the launcher's own *_OPTS / KAFKA_HOME / KAFKA_VERSION)
{
  while IFS='=' read -r name value; do
    case $name in
      KAFKA_HOME | KAFKA_VERSION | KAFKA_DEBUG | *_OPTS) continue ;;
    esac
    key=${name#KAFKA_}
    key=${key//___/-}
    key=${key//__/@}
    key=${key//_/.}
    key=${key//@/_}
    echo "${key,,}=$value"
  done < <(env | grep -E '^KAFKA_[A-Z0-9_]+=' | sort)
  echo "sasl.enabled.mechanisms=$MECHANISM"
  echo "sasl.mechanism.inter.broker.protocol=$MECHANISM"
  echo "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
  echo "allow.everyone.if.no.acl.found=false"
  # ANONYMOUS is only ever the principal of the controller listener, bound to the loopback.
  echo "super.users=User:admin;User:ANONYMOUS"
  for listener in plaintext external; do
    echo "listener.name.$listener.${MECHANISM,,}.sasl.jaas.config=$JAAS"
  done
} >"$PROPS"

cat >"$ADMIN_CONFIG" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=$MECHANISM
sasl.jaas.config=$JAAS
EOF

# ---- format once, with the broker's own SCRAM user
LOG_DIR=$(sed -n 's/^log\.dirs=//p' "$PROPS" | cut -d, -f1)
LOG_DIR=${LOG_DIR:-/tmp/kraft-combined-logs}
if [[ ! -f $LOG_DIR/meta.properties ]]; then
  : "${CLUSTER_ID:?CLUSTER_ID is not set}"
  log "formatting $LOG_DIR"
  "$KAFKA_HOME/bin/kafka-storage.sh" format --config "$PROPS" --cluster-id "$CLUSTER_ID" \
    --add-scram "$MECHANISM=[name=admin,password=$ADMIN_PASSWORD]" --ignore-formatted >&2
fi

"$KAFKA_HOME/bin/kafka-server-start.sh" "$PROPS" &
BROKER=$!
trap 'kill -TERM "$BROKER" 2>/dev/null || true' TERM INT

admin() { "$@" --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG"; }

for _ in $(seq 1 120); do
  kill -0 "$BROKER" 2>/dev/null || die "the broker exited while starting"
  admin "$KAFKA_HOME/bin/kafka-broker-api-versions.sh" >/dev/null 2>&1 && break
  sleep 1
done
admin "$KAFKA_HOME/bin/kafka-broker-api-versions.sh" >/dev/null || die "the broker did not answer in 120 s"

# ---- users (upserted: a changed password takes effect now)
for user in "${SERVICES[@]}" "${INTEGRATORS[@]}"; do
  admin "$KAFKA_HOME/bin/kafka-configs.sh" --alter --entity-type users --entity-name "$user" \
    --add-config "$MECHANISM=[iterations=8192,password=${PASSWORD[$user]}]" >/dev/null
done
log "SCRAM users: admin ${SERVICES[*]} ${INTEGRATORS[*]}"

# ---- ACLs (adding an existing binding changes nothing)
acl() { admin "$KAFKA_HOME/bin/kafka-acls.sh" --add --force "$@" >/dev/null; }
topics() { local t; for t in "$@"; do printf -- '--topic %s ' "$t"; done; }

for service in "${SERVICES[@]}"; do
  # Every service creates missing topics at start-up (shared.kafka.ensure_topics), so it may see and create all.
  acl --allow-principal "User:$service" --operation Describe --operation Create --topic '*'
done
# topic owners: the only writers of their stream
acl --allow-principal User:registry --operation Write --topic companies.v1
acl --allow-principal User:projects --operation Write --topic projects.v1
acl --allow-principal User:calls --operation Write --topic calls.v1
acl --allow-principal User:matching --operation Write --topic suggestions.v1
acl --allow-principal User:consortia --operation Write --topic consortia.v1
# consumers: read what they consume, dead-letter into its .dlq, commit offsets in their own groups
# shellcheck disable=SC2046
acl --allow-principal User:matching --operation Read $(topics companies.v1 projects.v1 calls.v1)
# shellcheck disable=SC2046
acl --allow-principal User:matching --operation Write $(topics companies.v1.dlq projects.v1.dlq calls.v1.dlq)
# shellcheck disable=SC2046
acl --allow-principal User:consortia --operation Read $(topics companies.v1 projects.v1 calls.v1)
# shellcheck disable=SC2046
acl --allow-principal User:consortia --operation Write $(topics companies.v1.dlq projects.v1.dlq calls.v1.dlq)
for service in projects calls alerts matching consortia; do
  acl --allow-principal "User:$service" --operation Read --group "$service" --resource-pattern-type prefixed
done
for service in projects calls alerts consortia; do
  acl --allow-principal "User:$service" --operation Read --topic suggestions.v1
  acl --allow-principal "User:$service" --operation Write --topic suggestions.v1.dlq
done
# alerts: company removals (its subscription, channels and deliveries go too)
acl --allow-principal User:alerts --operation Read --topic companies.v1
acl --allow-principal User:alerts --operation Write --topic companies.v1.dlq
# alerts: alerts.v1 and its private delivery topics (alerts.deliveries.v1, alerts.<channel>.retry.N, …)
acl --allow-principal User:alerts --operation Read --operation Write --topic alerts. --resource-pattern-type prefixed
# integrators: the public topics only, read-only, in their own consumer groups
for user in "${INTEGRATORS[@]}"; do
  # shellcheck disable=SC2046
  acl --allow-principal "User:$user" --operation Read $(topics "${PUBLIC_TOPICS[@]}")
  acl --allow-principal "User:$user" --operation Read --group "$user." --resource-pattern-type prefixed
done
log "ACLs applied"
touch "$WORK/ready"

wait "$BROKER"
