#!/usr/bin/env bash
# bench/hostscale.sh — the host side at hub scale (docs/scale.md): CPU time
# of `check` with many peers, of `up` with many blackhole routes, and of the
# repairs after one LAN link flap. Run as root; not part of CI.
#
# Everything happens in one throwaway network namespace, <prefix>-hub, with
# a veth pair lan0/lan1 as the LAN (lan0 192.168.50.1/24); the agent runs in
# it under nsenter, its state directory is a temporary directory. Both are
# removed on exit, also on failure.
#
# Sites (generated): "peers N" has N peers with one /24 inline each (the
# site file is the limit: 10,000 peers are 470 KB); "files N" has 1,000
# peers whose /28s (N in all) are in one prefixes_file each.
#
# Figures: check (user+sys CPU, wall; /usr/bin/time), up (CPU of the agent
# from /proc/PID/stat when it logs "tunnel running", and once the first
# watcher pass is done: no CPU used for 2 s), flap (`ip link set lan0 down`,
# `up`: CPU until idle again), reload (files sites: one prefix appended to
# a prefixes_file, `tunnel-agent reload`, CPU until idle again), stop (wall
# time of SIGINT to exit, reverting).
#
# Usage: sudo bench/hostscale.sh [--bin PATH] [--check "10000"] [--up "4000"] [--files "100000"]
set -euo pipefail

BIN=""
CHECKS="10000"
UPS="4000"
FILES="100000"
while [ $# -gt 0 ]; do
	case $1 in
	--bin) BIN=$2; shift 2 ;;
	--check) CHECKS=$2; shift 2 ;;
	--up) UPS=$2; shift 2 ;;
	--files) FILES=$2; shift 2 ;;
	-h | --help) sed -n 2,22p "$0"; exit 0 ;;
	*) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench/hostscale.sh: run as root" >&2; exit 2; }

NS="ths$$-hub"
WORK=$(mktemp -d /tmp/hostscale.XXXXXX)
AGENT_PID=""
cleanup() {
	if [ -n "$AGENT_PID" ]; then kill -KILL "$AGENT_PID" 2>/dev/null || true; fi
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "$BIN" ]; then
	BIN=$WORK/tunnel-agent
	(cd "$(dirname "$0")/.." && go build -o "$BIN" ./cmd/tunnel-agent)
fi
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add lan0 type veth peer name lan1
ip -n "$NS" addr add 192.168.50.1/24 dev lan0
ip -n "$NS" link set lan0 up
ip -n "$NS" link set lan1 up
mkdir -m 0700 "$WORK/state"
TICK=$(getconf CLK_TCK)

header='site: scale
lan: {interface: lan0}
tunnel:
  listen: 127.0.0.1:51999
  local_prefixes: [192.168.50.0/24]
  peers:'

# gen_peers N FILE: N peers, peer i owning 10.(i/256).(i%256).0/24.
gen_peers() {
	{ echo "$header"; awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "    - {name: p%d, prefixes: [10.%d.%d.0/24]}\n", i, int(i / 256), i % 256 }'; } >"$2"
}

# gen_files N DIR: 1,000 peers, N /28s in all, in DIR/pI.txt.
gen_files() {
	mkdir -p "$2"
	{ echo "$header"; awk 'BEGIN { for (i = 0; i < 1000; i++) printf "    - {name: p%d, prefixes_file: p%d.txt}\n", i, i }'; } >"$2/hub.yaml"
	awk -v n="$1" -v dir="$2" 'BEGIN {
		per = int(n / 1000)
		for (i = 0; i < 1000; i++) {
			f = dir "/p" i ".txt"
			printf "# peer %d\n", i > f
			for (k = i * per; k < (i + 1) * per; k++) {
				a = k * 16
				printf "10.%d.%d.%d/28\n", int(a / 65536), int(a / 256) % 256, a % 256 > f
			}
			close(f)
		}
	}'
}

agent() { nsenter --net="/run/netns/$NS" "$BIN" "$@" --state-dir "$WORK/state"; }

cpu() { awk -v t="$TICK" '{ sub(/.*\) /, ""); split($0, f, " "); printf "%.2f", (f[12] + f[13]) / t }' "/proc/$1/stat"; }

# idle PID: waits until the process used no CPU for 2 s; prints its CPU.
idle() {
	local last now still=0
	last=$(cpu "$1")
	while [ $still -lt 20 ]; do
		sleep 0.1
		now=$(cpu "$1")
		if [ "$now" = "$last" ]; then still=$((still + 1)); else still=0; fi
		last=$now
	done
	echo "$last"
}

check() { # check FILE LABEL
	local t
	t=$( { /usr/bin/time -f "%U %S %e" nsenter --net="/run/netns/$NS" "$BIN" check -c "$1" --state-dir "$WORK/state" >/dev/null; } 2>&1 | tail -1)
	awk -v l="$2" '{ printf "check %-28s %5.2f s CPU (%5.2f s wall)\n", l, $1 + $2, $3 }' <<<"$t"
}

up() { # up FILE LABEL
	local log=$WORK/up.log start ready base flap t0
	start=$(date +%s.%N)
	nsenter --net="/run/netns/$NS" "$BIN" up -c "$1" --state-dir "$WORK/state" >"$log" 2>&1 &
	AGENT_PID=$!
	for _ in $(seq 6000); do
		grep -q "tunnel running" "$log" && break
		kill -0 "$AGENT_PID" 2>/dev/null || { cat "$log" >&2; exit 1; }
		sleep 0.05
	done
	ready=$(cpu "$AGENT_PID")
	printf "up    %-28s %5.2f s CPU until running (%.2f s wall)" "$2" "$ready" "$(echo "$(date +%s.%N) - $start" | bc)"
	base=$(idle "$AGENT_PID")
	printf ", %5.2f s with the first watcher pass\n" "$base"
	ip -n "$NS" link set lan0 down
	ip -n "$NS" link set lan0 up
	flap=$(idle "$AGENT_PID")
	printf "flap  %-28s %5.2f s CPU\n" "$2" "$(echo "$flap - $base" | bc)"
	if [ -n "${3:-}" ]; then # a prefixes file: one more prefix, reload
		echo "11.0.0.0/24" >>"$3"
		agent reload -c "$1" >/dev/null
		for _ in $(seq 6000); do
			grep -q -e "configuration reloaded" -e "reload rejected" "$log" && break
			sleep 0.05
		done
		grep -q "configuration reloaded" "$log" || { cat "$log" >&2; exit 1; }
		printf "reload%-29s %5.2f s CPU (one prefix added)\n" " $2" "$(echo "$(idle "$AGENT_PID") - $flap" | bc)"
	fi
	t0=$(date +%s.%N)
	kill -INT "$AGENT_PID"
	wait "$AGENT_PID" || { echo "agent exit $?" >&2; cat "$log" >&2; exit 1; }
	AGENT_PID=""
	printf "stop  %-28s %5.2f s wall (revert)\n" "$2" "$(echo "$(date +%s.%N) - $t0" | bc)"
}

for n in $CHECKS; do
	gen_peers "$n" "$WORK/check$n.yaml"
	check "$WORK/check$n.yaml" "$n peers"
done
for n in $UPS; do
	gen_peers "$n" "$WORK/up$n.yaml"
	up "$WORK/up$n.yaml" "$n prefixes"
done
for n in $FILES; do
	gen_files "$n" "$WORK/files$n"
	check "$WORK/files$n/hub.yaml" "$n prefixes (files)"
	up "$WORK/files$n/hub.yaml" "$n prefixes (files)" "$WORK/files$n/p0.txt"
done
