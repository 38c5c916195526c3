#!/usr/bin/env bash
# A local walkthrough of `remarket run` (Kafka in, TikTok out), on loopback only:
#
#   1. starts a tansu broker (in-memory storage) and the TikTok simulator (`remarket tiktok-sim`);
#   2. creates the `events` topic and `remarket publish`es the bundled sample into it (events
#      and profile updates share the topic), plus one marker record per partition three hours
#      after the sample's last record (see "Markers" below);
#   3. replays the same records with `remarket replay` to know what TikTok should end up holding;
#   4. runs `remarket run` with config/sample.toml plus [kafka]/[http] sections pointing at the
#      local broker and the simulator, waits until every decision is made and acknowledged by
#      the simulator, and prints the /metrics lines of interest and the simulator's audiences;
#   5. stops the service with SIGTERM, and on exit (also on failure or Ctrl-C) stops everything
#      it started and removes its temporary directory.
#
# Usage:   scripts/try-kafka.sh
#          REMARKET=target/release/remarket scripts/try-kafka.sh
# Needs:   remarket (REMARKET, default `remarket` on PATH: `cargo install --locked --path .`),
#          tansu 0.6 (TANSU, default `tansu` on PATH or ~/.cargo/bin/tansu:
#          `cargo install tansu --locked --version 0.6.0 --features dynostore,libsql`, as .ci/run
#          installs it), curl, awk.
# Knobs:   KAFKA_PORT (19092), SIM_PORT (18099), HTTP_PORT (19898): a default port that is
#          taken is replaced by the next free one above it; a port you set must be free.
#          PARTITIONS (3), TIMEOUT_SECS (180), KEEP=1 keeps the temporary directory (logs,
#          configs, the replay's output) instead of removing it.
#
# Markers: in `run`, a window closes when the watermark of every input partition passes it;
# once the input is idle and drained the watermark follows the wall clock, which is far past
# the sample's November 2026, so every window closes. A replay instead ends by moving the
# watermark to the last record. One more record per partition, hours later, makes the replay
# close the windows `run` closes, so `run` and `replay` agree exactly.
set -euo pipefail

REMARKET=${REMARKET:-remarket}
PARTITIONS=${PARTITIONS:-3}
TIMEOUT_SECS=${TIMEOUT_SECS:-180}
KEEP=${KEEP:-}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SAMPLE_CONFIG=$ROOT/config/sample.toml
SAMPLE_EVENTS=$ROOT/config/sample-events.jsonl

# The sample config's advertisers and its existing Partner audience (big-ticket-viewers).
ADV_A=7178918106775994370
ADV_B=7178918106775994371
EXISTING=6900000000000000001
TOKEN=try-kafka-token
TOPIC=events

say() { printf '\n== %s\n' "$*"; }
die() {
    printf 'try-kafka: %s\n' "$*" >&2
    exit 1
}

# --- prerequisites -------------------------------------------------------------------------

command -v "$REMARKET" >/dev/null \
    || die "no remarket binary '$REMARKET': run 'cargo install --locked --path .' or set REMARKET=path/to/remarket"
if [[ -z ${TANSU:-} ]]; then
    TANSU=$(command -v tansu || true)
    [[ -n $TANSU ]] || TANSU=$HOME/.cargo/bin/tansu
fi
[[ -x $TANSU ]] || die "no tansu broker at '$TANSU': run 'cargo install tansu --locked --version 0.6.0 --features dynostore,libsql' or set TANSU=path/to/tansu"
for tool in curl awk; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

# --- ports ---------------------------------------------------------------------------------

# Whether something accepts connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port NAME DEFAULT: the port in variable NAME if set (it must be free), else DEFAULT or
# the next free port above it. The defaults sit below the kernel's ephemeral range, where the
# test suite's brokers pick their ports, so a concurrent `cargo test` does not collide.
pick_port() {
    local name=$1 port=${!1:-}
    if [[ -n $port ]]; then
        port_busy "$port" && die "$name=$port is in use"
        printf '%s' "$port"
        return
    fi
    port=$2
    while port_busy "$port"; do
        port=$((port + 1))
        ((port < $2 + 100)) || die "no free port in $2..$((port - 1)); set $name"
    done
    printf '%s' "$port"
}
KAFKA_PORT=$(pick_port KAFKA_PORT 19092)
SIM_PORT=$(pick_port SIM_PORT 18099)
HTTP_PORT=$(pick_port HTTP_PORT 19898)
BROKERS=127.0.0.1:$KAFKA_PORT
SIM_URL=http://127.0.0.1:$SIM_PORT
ADMIN_URL=http://127.0.0.1:$HTTP_PORT

# --- processes and cleanup -----------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/remarket-try.XXXXXX")
NAMES=() # what this script started, in start order (plain arrays: bash 3.2 works too)
PIDS=()  # their process ids; emptied once a process was stopped

cleanup() {
    local status=$? i pid
    trap - EXIT INT TERM
    # Newest first: the service before the simulator and the broker it talks to.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        [[ -n $pid ]] || continue
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if ((status != 0)); then
        [[ -n $KEEP ]] || printf '\n(KEEP=1 keeps the logs and configs)\n' >&2
        for ((i = 0; i < ${#NAMES[@]}; i++)); do
            printf '\n--- last lines of %s\n' "$WORK/${NAMES[i]}.log" >&2
            tail -n 20 "$WORK/${NAMES[i]}.log" >&2 || true
        done
    fi
    if [[ -n $KEEP ]]; then
        printf '\nkept %s (logs, configs, the replay'"'"'s output)\n' "$WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME COMMAND...: runs COMMAND in the background, output to $WORK/NAME.log; sets PID.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 </dev/null &
    PID=$!
    NAMES+=("$name")
    PIDS+=("$PID")
}

# Fails if a process this script started has exited.
check_alive() {
    local i
    for ((i = 0; i < ${#PIDS[@]}; i++)); do
        [[ -n ${PIDS[i]} ]] || continue
        kill -0 "${PIDS[i]}" 2>/dev/null || die "${NAMES[i]} exited early (log: $WORK/${NAMES[i]}.log)"
    done
}

# wait_until WHAT SECONDS COMMAND...: polls COMMAND every 0.2 s until it succeeds; on timeout
# the message shows PROGRESS, which COMMAND may set.
PROGRESS=
wait_until() {
    local what=$1 limit=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@"; do
        check_alive
        ((SECONDS < deadline)) || die "timed out after ${limit}s waiting for $what${PROGRESS:+ ($PROGRESS)}"
        sleep 0.2
    done
}

# --- 1. broker and simulator ---------------------------------------------------------------

say "starting tansu on $BROKERS and the TikTok simulator on $SIM_URL (logs in $WORK)"
# As tests/common/kafka.rs starts it: one broker, in-memory storage, loopback.
start tansu "$TANSU" broker \
    --listener-url "tcp://$BROKERS" \
    --advertised-listener-url "tcp://$BROKERS" \
    --storage-engine memory://tansu/
# One token for both sample advertisers, and the existing Partner audience big-ticket-viewers
# exports to (audiences marked `new` in the config are created by remarket).
start sim "$REMARKET" tiktok-sim --listen "127.0.0.1:$SIM_PORT" \
    --token "$TOKEN=$ADV_A,$ADV_B" --audience "$ADV_A:$EXISTING"
wait_until "tansu to listen" 30 port_busy "$KAFKA_PORT"
wait_until "the simulator to answer" 30 curl -fs -o /dev/null "$SIM_URL/sim/audiences"

# --- 2. the input topic --------------------------------------------------------------------

# One marker a partition, three hours after the sample's last record, as `kcat -C -J` lines so
# that `publish --keep-partitions` puts each in its own partition (plain lines go by key).
last_ts=$(grep -o '"ts":[0-9]*' "$SAMPLE_EVENTS" | cut -d: -f2 | sort -n | tail -n 1)
marker_ts=$((last_ts + 3 * 3600 * 1000))
for ((p = 0; p < PARTITIONS; p++)); do
    printf '{"topic":"%s","partition":%d,"offset":0,"ts":%d,"key":"marker","payload":"{\\"user_id\\":\\"marker-%d\\",\\"event\\":\\"Marker\\",\\"ts\\":%d}"}\n' \
        "$TOPIC" "$p" "$marker_ts" "$p" "$marker_ts"
done >"$WORK/markers.jsonl"

say "publishing the sample to topic $TOPIC ($PARTITIONS partitions)"
# batch.num.messages=1: tansu 0.6 cannot resume a fetch inside a producer batch (a consumer
# that takes a partition over from a committed offset would skip the rest of the batch;
# tests/broker_fetch.rs). Kafka itself needs no such setting.
"$REMARKET" publish --brokers "$BROKERS" --topic "$TOPIC" --create-partitions "$PARTITIONS" \
    -X batch.num.messages=1 "$SAMPLE_EVENTS"
"$REMARKET" publish --brokers "$BROKERS" --topic "$TOPIC" --keep-partitions \
    -X batch.num.messages=1 "$WORK/markers.jsonl"

# --- 3. what TikTok should hold: a replay of the same records ------------------------------

say "replaying the same records (dry run) for the expected result"
"$REMARKET" replay --config "$SAMPLE_CONFIG" --out "$WORK/replay" \
    "$SAMPLE_EVENTS" "$WORK/markers.jsonl"
want_decisions=$(wc -l <"$WORK/replay/decisions.jsonl")
# Audience members after the replay: the hashed ids of `exported` decisions minus those of
# `removed` ones, per campaign, as "ID_TYPE HASH" lines. decisions.jsonl writes its fields in a
# fixed order (docs/outputs.md); split on quotes, the ids are fields 18, 20, 22, 24.
awk -F'"' '
    $14 == "exported" || $14 == "removed" {
        for (i = 18; i + 2 <= NF; i += 4) {
            key = $4 " " $i " " $(i + 2)
            if ($14 == "exported") member[key] = 1; else delete member[key]
        }
    }
    END { for (k in member) { split(k, f, " "); print f[2], f[3] } }' \
    "$WORK/replay/decisions.jsonl" | sort >"$WORK/want-members.txt"
want_members=$(wc -l <"$WORK/want-members.txt")

# --- 4. remarket run -----------------------------------------------------------------------

# The sample config pointed at the simulator, with a shorter linger and commit interval so the
# walkthrough is quick, and the sections `run` needs.
sed -e "s|https://business-api.tiktok.com|$SIM_URL|" \
    -e 's|^linger = "5s"|linger = "200ms"|' \
    "$SAMPLE_CONFIG" >"$WORK/run.toml"
cat >>"$WORK/run.toml" <<EOF

[kafka]
brokers = "$BROKERS"
events_topic = "$TOPIC"
profiles_topic = "$TOPIC"        # events and profile updates share one topic
commit_interval = "1s"

[kafka.client]
"fetch.wait.max.ms" = "10"       # tansu holds every fetch this long (default 500 ms)
"batch.num.messages" = "1"       # see the publish step above

[http]
listen = "127.0.0.1:$HTTP_PORT"
EOF
"$REMARKET" check-config --config "$WORK/run.toml"

say "starting remarket run (admin server on $ADMIN_URL)"
# The token comes from tiktok.access_token_env (TIKTOK_ACCESS_TOKEN in the sample config).
start run env TIKTOK_ACCESS_TOKEN="$TOKEN" "$REMARKET" run --config "$WORK/run.toml"
RUN_PID=$PID
RUN_SLOT=$((${#PIDS[@]} - 1))
# 503 until start-up is over and both stages restored their first assignment.
wait_until "/readyz" 60 curl -fs -o /dev/null "$ADMIN_URL/readyz"

# What the simulator holds, as "ID_TYPE HASH" lines over every audience.
held_members() {
    local audiences members id
    audiences=$(curl -fs "$SIM_URL/sim/audiences") || return 1
    grep -o '"audience_id":"[0-9]*"' <<<"$audiences" | cut -d'"' -f4 | while read -r id; do
        members=$(curl -fs "$SIM_URL/sim/audiences/$id/members") || return 1
        { grep -o '"id_type":"[A-Z0-9_]*","id":"[0-9a-f]*"' <<<"$members" || true; } \
            | cut -d'"' -f4,8 | tr '"' ' '
    done | sort
}
metric_sum() { awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $NF } END { print s + 0 }'; }

# Done: every decision of the replay made, nothing waiting for TikTok, and the simulator
# holding the replay's members.
done_yet() {
    local metrics decisions pending
    metrics=$(curl -fs "$ADMIN_URL/metrics") || return 1
    decisions=$(metric_sum remarket_activate_decisions_total <<<"$metrics")
    pending=$(metric_sum remarket_sink_pending_users <<<"$metrics")
    held_members >"$WORK/held-members.txt" || return 1
    PROGRESS="$decisions of $want_decisions decisions, $pending users pending for TikTok,"
    PROGRESS+=" $(wc -l <"$WORK/held-members.txt") of $want_members hashed ids held"
    ((decisions == want_decisions && pending == 0)) \
        && cmp -s "$WORK/held-members.txt" "$WORK/want-members.txt"
}
say "waiting (at most ${TIMEOUT_SECS}s) for $want_decisions decisions and their TikTok mappings"
started=$SECONDS
wait_until "run to match the replay" "$TIMEOUT_SECS" done_yet
printf 'done in %ss: %s\n' "$((SECONDS - started))" "$PROGRESS"
echo "the simulator holds exactly the hashed ids the replay decided"

# --- 5. what happened ----------------------------------------------------------------------

say "/metrics (lines of interest; zeros left out)"
curl -fsS "$ADMIN_URL/metrics" \
    | grep -E '^remarket_(source_|detect_(qualifications|assigned)|activate_decisions|sink_(users|requests|failed|pending)|ready)' \
    | awk '$NF != 0'

say "the simulator's audiences (member_count counts hashed ids: email and phone each count)"
curl -fsS "$SIM_URL/sim/audiences" | awk '{ gsub(/\},\{/, "},\n{"); print }'

say "stopping remarket run with SIGTERM (checkpoint, flush, commit, exit)"
kill -TERM "$RUN_PID"
status=0
wait "$RUN_PID" || status=$?
PIDS[RUN_SLOT]=
printf 'remarket run exited with %s\n' "$status"
((status == 0)) || die "remarket run did not stop cleanly"
