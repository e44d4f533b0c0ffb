#!/usr/bin/env bash
# hubcache benchmark: hubcache vs nginx (proxy_cache_lock) vs nginx (slice), against one fake Hub
# whose CDN caps each connection's throughput. Prints one table; docs/benchmarks.md explains it.
#
#   bash tests/bench/run.sh [--size 1GiB] [--cdn-rate 25MB] [--latency-ms 20] [--quick]
#                           [--slice 8m] [--clients 32] [--duration 4] [--load-reps 7] [--reps 7]
#                           [--proxies hubcache,nginx-lock,nginx-slice] [--bin PATH] [--json FILE]
#                           [--keep] [--tcp-cc NAME]
#
# --quick: 64 MiB file, one round of 3 s load runs, 2 repetitions (a smoke run of about a minute).
# --bin: use this hubcache binary instead of building build/bin/hubcache (Release).
# --keep: keep the work directory (logs, nginx configs, results.json) instead of deleting it.
# --tcp-cc: run with net.ipv4.tcp_congestion_control set to NAME (e.g. cubic) for every proxy alike,
#   and put the machine's setting back at the end (needs root or sudo). Off by default: the machine
#   is measured as it is configured.
# Installs what is missing (nginx, wrk, curl, a C compiler; the build dependencies through
# .ci/install-deps) with apt-get, without starting any system service. Everything runs as the
# invoking user on 127.0.0.1/127.0.0.2 with free ports, under one mktemp directory, and is torn
# down on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

bin="" keep=0 json="" quick=0 tcp_cc=""
pass=()
while (($#)); do
  case "$1" in
    --bin) bin=$(realpath -m "$2"); shift 2 ;;
    --bin=*) bin=$(realpath -m "${1#*=}"); shift ;;
    --keep) keep=1; shift ;;
    --json) json=$(realpath -m "$2"); shift 2 ;;
    --json=*) json=$(realpath -m "${1#*=}"); shift ;;
    --quick) quick=1; pass+=(--quick); shift ;;
    --tcp-cc) tcp_cc=${2:-}; shift 2 ;;
    --tcp-cc=*) tcp_cc=${1#*=}; shift ;;
    --size|--cdn-rate|--latency-ms|--slice|--clients|--duration|--reps|--load-reps|--proxies)
      (($# >= 2)) || { echo "run.sh: $1 needs a value" >&2; exit 2; }
      pass+=("$1" "$2"); shift 2 ;;
    --size=*|--cdn-rate=*|--latency-ms=*|--slice=*|--clients=*|--duration=*|--reps=*|--load-reps=*|--proxies=*)
      pass+=("$1"); shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

cd "$ROOT"
log() { printf '[bench] %s\n' "$*" >&2; }
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"

# ---------------------------------------------------------------------------- tools
missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v cc >/dev/null || missing+=(gcc)
command -v node >/dev/null || missing+=(nodejs)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  # Debian starts a service when a daemon package is installed; keep nginx from starting on port
  # 80 with a policy-rc.d for the duration of the install (unless the system already has one).
  policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy" && made_policy=1
  fi
  rc=0
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } || rc=$?
  ((made_policy)) && $sudo rm -f "$policy"
  ((rc == 0)) || { log "apt-get install failed"; exit 1; }
fi
export PATH="$PATH:/usr/sbin:/sbin" # nginx lives in /usr/sbin

# ---------------------------------------------------------------------------- hubcache
if [[ -z $bin ]]; then
  bin=$ROOT/build/bin/hubcache
  bash .ci/install-deps
  if [[ ! -f build/build.ninja ]]; then
    log "configuring build/ (Release)"
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  log "building hubcache (Release, build/)"
  cmake --build build --target hubcache
fi
[[ -x $bin ]] || { log "no hubcache binary at $bin"; exit 1; }
bin=$(realpath "$bin")

# ---------------------------------------------------------------------------- run
work=$(mktemp -d "${TMPDIR:-/tmp}/hubcache-bench.XXXXXX")
driver="" saved_cc=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $saved_cc ]] && $sudo sysctl -qw "net.ipv4.tcp_congestion_control=$saved_cc"
  if [[ -n $driver ]] && kill -0 "$driver" 2>/dev/null; then
    kill -TERM "$driver" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$driver" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$driver" 2>/dev/null || true
  fi
  # Whatever the driver started and did not stop: it records each pid with its start time, so a
  # recycled pid is never hit. nginx workers are children of their master.
  if [[ -f $work/pids ]]; then
    while read -r pid start _; do
      [[ $pid =~ ^[0-9]+$ ]] || continue
      stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
      fields=(${stat##*) })
      [[ ${fields[19]} == "$start" ]] || continue
      kids=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null || true)
      kill -KILL "$pid" $kids 2>/dev/null || true
    done <"$work/pids"
  fi
  if ((keep)); then log "work directory kept: $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n $tcp_cc ]]; then
  saved_cc=$(sysctl -n net.ipv4.tcp_congestion_control)
  $sudo sysctl -qw "net.ipv4.tcp_congestion_control=$tcp_cc" || { saved_cc=""; log "cannot set tcp_congestion_control=$tcp_cc"; exit 1; }
  log "tcp_congestion_control: $saved_cc -> $tcp_cc until the end of the run"
fi

cc -O2 -pthread -o "$work/hload" tests/bench/hload.c
cc -O2 -pthread -o "$work/fetchn" tests/bench/fetchn.c -lcrypto

# Full run: about 9 minutes at 1 GiB and 25 MB/s per CDN connection; bounded at 25 minutes.
deadline=1500
((quick)) && deadline=600
args=(--work "$work" --hubcache "$bin" --hload "$work/hload" --fetchn "$work/fetchn" --deadline-s "$deadline" "${pass[@]}")
[[ -n $json ]] && args+=(--json "$json")
timeout -k 10 $((deadline + 60)) node tests/bench/bench.mjs "${args[@]}" &
driver=$!
wait "$driver"
