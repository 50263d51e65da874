#!/usr/bin/env bash
# bench/run.sh — compare ways of carrying two hosts' traffic between two
# gateways on one Linux machine. Run as root; not part of CI.
#
#   client host — gateway A ===WAN 198.18.0.0/24=== gateway B — server host
#   (cli eth0 192.168.111.2)  (gwa lan0 .1, wan0 198.18.0.3)
#                             (gwb wan0 198.18.0.2, lan0 11.11.11.1)  (srv eth0 11.11.11.100)
#
# Every host is a throwaway network namespace named <prefix>-{cli,gwa,gwb,srv};
# veth pairs are created inside them, so the machine's own namespace is never
# touched. LAN links have MTU 1420, the WAN link 1500. The rx/tx checksum
# offloads of the LAN veth ends are off (as the tutorial does on its veths)
# unless --offloads; the WAN veth keeps its defaults, like a real NIC.
#
# Modes (one function each, mode_<name> up|down; to add one — e.g. the
# agent's wireguard mode — write mode_<name> and list it in ALL_MODES or pass
# it with --modes):
#   direct       plain routing between the gateways: the machine's limit
#   vxlan        kernel VXLAN between the gateways, routed
#   wggo         wireguard-go (newest from the Go module proxy) on a TUN, set up with wg
#   ta_plain     tunnel-agent, plain mode
#   ta_ring      tunnel-agent, plain mode, capture through a TPACKET_V3 ring (lan.capture: ring)
#   ta_wg        tunnel-agent, wireguard mode
#   ta_ebpf      tunnel-agent, plain mode on the eBPF dataplane (tunnel.dataplane: ebpf):
#                no process is on the path, so its CPU shows as the machine's idle
#                and softirq shares (tcp_idle_pct, tcp_softirq_pct)
#
# Metrics per mode and round: iperf3 TCP 1 stream client→server, server→client
# and 4 streams (and the sender's retransmits; the machine's idle and softirq CPU
# shares over the three TCP tests); iperf3 UDP at unlimited rate with 64- and 1372-byte payloads
# (received packets/s, loss); ping RTT average and p99 (200 pings at 10 ms);
# CPU seconds per GB of the tunnel processes over the TCP tests; their peak
# RSS. Rounds alternate the order of the modes; the report gives medians with
# min–max.
#
# Usage: sudo bench/run.sh [--duration S] [--rounds N] [--modes "a b"] [--offloads] [--out FILE]
#                          [--profile DIR]   (CPU profiles of the agents, for go tool pprof)
#                          [--perf DIR]      (system-wide perf record -a -g during each mode's tcp_up)
#                          [--status DIR]    (each agent's `status --json` after each mode's tests: where packets were dropped)
set -euo pipefail

DURATION=5
ROUNDS=3
ALL_MODES="direct vxlan wggo ta_plain ta_ring ta_wg ta_ebpf"
MODES=$ALL_MODES
OFFLOADS=0
OUT=""
PROFILE="" # directory for the agents' CPU profiles (go tool pprof)
PERF=""    # directory for system-wide perf profiles (perf report -i)
STATUS=""  # directory for the agents' status after each mode (JSON)
while [ $# -gt 0 ]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--modes) MODES=$2; shift 2 ;;
	--offloads) OFFLOADS=1; shift ;;
	--out) OUT=$2; shift 2 ;;
	--profile) PROFILE=$2; shift 2 ;;
	--perf) PERF=$2; shift 2 ;;
	--status) STATUS=$2; shift 2 ;;
	-h | --help) sed -n 2,30p "$0"; exit 0 ;;
	*) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench/run.sh: run as root" >&2; exit 2; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
P=tab$$ # namespace prefix, unique per run
CLI=$P-cli GWA=$P-gwa GWB=$P-gwb SRV=$P-srv
WORK=$(mktemp -d /tmp/tunnel-bench.XXXXXX)
RESULTS=$WORK/results.tsv
PIDS=() # every process this script started

log() { echo "[$(date +%T)] $*" >&2; }
in_ns() { local ns=$1; shift; nsenter --net=/run/netns/"$ns" "$@"; }

cleanup() {
	set +e
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
	done
	for ns in $CLI $GWA $GWB $SRV; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# start NS CMD...: run CMD in namespace NS in the background; its PID goes
# to PIDS (for cleanup) and MODE_PIDS (the mode's processes).
start() {
	local ns=$1; shift
	nsenter --net=/run/netns/"$ns" "$@" >>"$WORK/$ns.log" 2>&1 &
	PIDS+=("$!")
	MODE_PIDS+=("$!")
}

# stop PID: SIGTERM, wait up to 10 s, then SIGKILL.
stop() {
	kill -TERM "$1" 2>/dev/null || return 0
	for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null || true
}

install_tools() {
	local missing=()
	command -v iperf3 >/dev/null || missing+=(iperf3)
	command -v wg >/dev/null || missing+=(wireguard-tools)
	command -v ethtool >/dev/null || missing+=(ethtool)
	command -v jq >/dev/null || missing+=(jq)
	command -v ping >/dev/null || missing+=(iputils-ping)
	[ -z "$PERF" ] || command -v perf >/dev/null || missing+=(linux-perf)
	command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]}"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
}

build_binaries() {
	log "building tunnel-agent and wireguard-go (newest) in $WORK"
	(cd "$REPO" && go build -o "$WORK/tunnel-agent" ./cmd/tunnel-agent)
	mkdir -p "$WORK/wg"
	(cd "$WORK/wg" && GOFLAGS=-mod=mod GOBIN="$WORK" go install golang.zx2c4.com/wireguard@latest)
	WGGO_VERSION=$(go version -m "$WORK/wireguard" | awk '$1 == "mod" {print $3}')
}

# link NS1 IF1 ADDR1 NS2 IF2 ADDR2 MTU [wan]: a veth pair between two
# namespaces. LAN veths get their checksum offloads switched off (unless
# --offloads), as the tutorial does with its veths; the WAN link stands for
# the gateways' real NICs and keeps the defaults.
link() {
	ip -n "$1" link add "$2" mtu "$7" type veth peer name "$5" mtu "$7" netns "$4"
	ip -n "$1" addr add "$3" dev "$2"
	ip -n "$4" addr add "$6" dev "$5"
	if [ "$OFFLOADS" = 0 ] && [ "${8:-}" != wan ]; then
		in_ns "$1" ethtool -K "$2" rx off tx off >/dev/null 2>&1
		in_ns "$4" ethtool -K "$5" rx off tx off >/dev/null 2>&1
	fi
	ip -n "$1" link set "$2" up
	ip -n "$4" link set "$5" up
}

build_topology() {
	log "building namespaces $P-{cli,gwa,gwb,srv}"
	for ns in $CLI $GWA $GWB $SRV; do
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
			net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
	done
	for ns in $GWA $GWB; do in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1; done
	link "$CLI" eth0 192.168.111.2/24 "$GWA" lan0 192.168.111.1/24 1420
	link "$GWA" wan0 198.18.0.3/24 "$GWB" wan0 198.18.0.2/24 1500 wan
	link "$GWB" lan0 11.11.11.1/24 "$SRV" eth0 11.11.11.100/24 1420
	ip -n "$CLI" route add default via 192.168.111.1
	ip -n "$SRV" route add default via 11.11.11.1
}

# ---- modes: mode_<name> up|down. "up" sets the tunnel up and leaves the
# PIDs of its processes (if any) in MODE_PIDS; "down" removes it all. ----
MODE_PIDS=()

mode_direct() {
	case $1 in
	up)
		ip -n "$GWA" route add 11.11.11.0/24 via 198.18.0.2
		ip -n "$GWB" route add 192.168.111.0/24 via 198.18.0.3 ;;
	down)
		ip -n "$GWA" route del 11.11.11.0/24 || true
		ip -n "$GWB" route del 192.168.111.0/24 || true ;;
	esac
}

mode_vxlan() {
	case $1 in
	up)
		ip -n "$GWA" link add vx0 type vxlan id 42 local 198.18.0.3 remote 198.18.0.2 dstport 4789 dev wan0
		ip -n "$GWB" link add vx0 type vxlan id 42 local 198.18.0.2 remote 198.18.0.3 dstport 4789 dev wan0
		ip -n "$GWA" addr add 10.99.0.1/30 dev vx0
		ip -n "$GWB" addr add 10.99.0.2/30 dev vx0
		ip -n "$GWA" link set vx0 up
		ip -n "$GWB" link set vx0 up
		ip -n "$GWA" route add 11.11.11.0/24 via 10.99.0.2
		ip -n "$GWB" route add 192.168.111.0/24 via 10.99.0.1 ;;
	down)
		ip -n "$GWA" link del vx0 || true
		ip -n "$GWB" link del vx0 || true ;;
	esac
}

mode_wggo() {
	local wa=${P}a wb=${P}b # interface names, unique per run (UAPI sockets are global)
	case $1 in
	up)
		local ka kb
		ka=$(wg genkey) kb=$(wg genkey)
		start "$GWA" "$WORK/wireguard" -f "$wa"
		start "$GWB" "$WORK/wireguard" -f "$wb"
		for _ in $(seq 50); do
			[ -S /var/run/wireguard/$wa.sock ] && [ -S /var/run/wireguard/$wb.sock ] && break
			sleep 0.1
		done
		in_ns "$GWA" wg set "$wa" private-key <(echo "$ka") listen-port 51820 \
			peer "$(echo "$kb" | wg pubkey)" endpoint 198.18.0.2:51820 allowed-ips 11.11.11.0/24
		in_ns "$GWB" wg set "$wb" private-key <(echo "$kb") listen-port 51820 \
			peer "$(echo "$ka" | wg pubkey)" endpoint 198.18.0.3:51820 allowed-ips 192.168.111.0/24
		ip -n "$GWA" link set "$wa" mtu 1420 up
		ip -n "$GWB" link set "$wb" mtu 1420 up
		ip -n "$GWA" route add 11.11.11.0/24 dev "$wa"
		ip -n "$GWB" route add 192.168.111.0/24 dev "$wb" ;;
	down)
		for pid in "${MODE_PIDS[@]}"; do stop "$pid"; done ;;
	esac
}

# agent_site NAME LISTEN PEER_ENDPOINT PEER_PREFIX [EXTRA_TUNNEL_YAML]: a site
# file for a gateway whose LAN link is lan0 (made by the bench: no namespaces,
# MTU and offloads already set).
agent_site() {
	cat <<EOF
site: $1
lan:
  interface: lan0
${LAN_EXTRA:-}
tunnel:
  listen: 0.0.0.0:$2
${5:-}
  peers:
    - name: far
      endpoint: $3
      prefixes: [$4]
      keepalive: 0
  blackhole: [$4]
EOF
}

# start_agents: tunnel-agent up on both gateways with $WORK/{a,b}.yaml.
start_agents() {
	mkdir -p "$WORK/state"
	local site ns
	for site in a b; do
		ns=$GWA; [ $site = b ] && ns=$GWB
		start "$ns" env TUNNEL_AGENT_CPUPROFILE="${PROFILE:+$PROFILE/$site-$(date +%s%N).prof}" \
			"$WORK/tunnel-agent" up -c "$WORK/$site.yaml" --state-dir "$WORK/state" --log-level warn
	done
}

# agent_mode up|down [EXTRA_TUNNEL_YAML]: tunnel-agent on both gateways.
agent_mode() {
	case $1 in
	up)
		agent_site a 60000 198.18.0.2:50000 11.11.11.0/24 "${2:-}" >"$WORK/a.yaml"
		agent_site b 50000 198.18.0.3:60000 192.168.111.0/24 "${2:-}" >"$WORK/b.yaml"
		start_agents ;;
	down)
		for pid in "${MODE_PIDS[@]}"; do stop "$pid"; done ;;
	esac
}

mode_ta_plain() { agent_mode "$1" ""; } # plain is the default mode
# plain mode carried by the tc programs (tunnel.dataplane: ebpf)
mode_ta_ebpf() { agent_mode "$1" "  dataplane: ebpf"; }
# plain mode with the TPACKET_V3 capture ring (lan.capture: ring)
mode_ta_ring() { LAN_EXTRA="  capture: ring" agent_mode "$1" ""; }
# The agent's wireguard mode: keys made with the agent's own genkey/pubkey,
# each site file given the mode, its key file and the far end's public key.
mode_ta_wg() {
	case $1 in
	up)
		local s
		for s in a b; do
			(umask 077 && "$WORK/tunnel-agent" genkey >"$WORK/$s.key")
		done
		agent_site a 60000 198.18.0.2:50000 11.11.11.0/24 "$(wg_tunnel_yaml a)" |
			wg_peer_key b >"$WORK/a.yaml"
		agent_site b 50000 198.18.0.3:60000 192.168.111.0/24 "$(wg_tunnel_yaml b)" |
			wg_peer_key a >"$WORK/b.yaml"
		start_agents ;;
	down)
		for pid in "${MODE_PIDS[@]}"; do stop "$pid"; done ;;
	esac
}
wg_tunnel_yaml() { printf '  mode: wireguard\n  private_key_file: %s' "$WORK/$1.key"; }
# wg_peer_key SITE: add SITE's public key to the peer of the file on stdin.
wg_peer_key() {
	local pub
	pub=$("$WORK/tunnel-agent" pubkey <"$WORK/$1.key")
	sed "s|^    - name: far\$|&\n      public_key: $pub|"
}

# ---- measurements ----

# record MODE ROUND METRIC VALUE
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }

wait_path() {
	for _ in $(seq 100); do
		in_ns "$CLI" ping -c1 -W1 -q 11.11.11.100 >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	log "no path client→server"; return 1
}

# cpu_ticks PID...: utime+stime of the processes (and their threads), in clock ticks.
cpu_ticks() {
	local t=0 pid
	for pid in "$@"; do
		t=$((t + $(awk '{print $14 + $15}' /proc/"$pid"/stat 2>/dev/null || echo 0)))
	done
	echo $t
}

# host_idle: idle, total and softirq jiffies of the whole machine (all CPUs),
# from /proc/stat: how much CPU the TCP tests left unused (idle + iowait), and
# how much went to softirq (where the kernel's packet path, the eBPF
# programs included, runs).
host_idle() { awk '/^cpu /{t=0; for (i=2; i<=NF; i++) t+=$i; print $5+$6, t, $8}' /proc/stat; }

# iperf JSON, bytes received: TCP from sum_received, UDP from the receiver's sum.
iperf() { in_ns "$CLI" iperf3 -c 11.11.11.100 -t "$DURATION" -J "$@" 2>>"$WORK/iperf.err"; }

measure() { # MODE ROUND
	local m=$1 r=$2 j bytes=0 b t0 t1 hz
	hz=$(getconf CLK_TCK)
	# Latency first, on an idle path (no queue left over from a flood).
	in_ns "$CLI" ping -c 200 -i 0.01 11.11.11.100 | sed -n 's/.*time=\([0-9.]*\).*/\1/p' | sort -n >"$WORK/rtt"
	record "$m" "$r" rtt_avg_ms "$(awk '{s+=$1} END{print s/NR}' "$WORK/rtt")"
	record "$m" "$r" rtt_p99_ms "$(awk '{a[NR]=$1} END{i=int(NR*0.99+0.999); print a[i]}' "$WORK/rtt")"
	t0=$(cpu_ticks "${MODE_PIDS[@]}")
	local idle0 idle1
	idle0=$(host_idle)
	for spec in "tcp_up:" "tcp_down:-R" "tcp_4:-P 4"; do
		local perf_pid=""
		if [ -n "$PERF" ] && [ "${spec%%:*}" = tcp_up ]; then
			perf record -q -a -g -o "$PERF/$m-$r-tcp_up.data" -- sleep "$DURATION" >/dev/null 2>&1 &
			perf_pid=$!
		fi
		# shellcheck disable=SC2086
		j=$(iperf ${spec#*:})
		[ -z "$perf_pid" ] || wait "$perf_pid" || true
		b=$(jq '.end.sum_received.bytes' <<<"$j")
		bytes=$((bytes + ${b%.*}))
		record "$m" "$r" "${spec%%:*}_mbps" "$(jq '.end.sum_received.bits_per_second/1e6' <<<"$j")"
		record "$m" "$r" "${spec%%:*}_retr" "$(jq '.end.sum_sent.retransmits // 0' <<<"$j")"
	done
	t1=$(cpu_ticks "${MODE_PIDS[@]}")
	idle1=$(host_idle)
	record "$m" "$r" tcp_idle_pct "$(awk -v a="$idle0" -v b="$idle1" 'BEGIN{split(a,x," "); split(b,y," "); print 100*(y[1]-x[1])/(y[2]-x[2])}')"
	record "$m" "$r" tcp_softirq_pct "$(awk -v a="$idle0" -v b="$idle1" 'BEGIN{split(a,x," "); split(b,y," "); print 100*(y[3]-x[3])/(y[2]-x[2])}')"
	if [ ${#MODE_PIDS[@]} -gt 0 ]; then
		record "$m" "$r" cpu_s_per_gb "$(awk -v c=$((t1 - t0)) -v hz="$hz" -v b="$bytes" 'BEGIN{print c/hz/(b/1e9)}')"
	fi
	for len in 64 1372; do
		j=$(iperf -u -b 0 -l "$len")
		record "$m" "$r" "udp${len}_kpps" "$(jq '(.end.sum.packets-.end.sum.lost_packets)/.end.sum.seconds/1e3' <<<"$j")"
		record "$m" "$r" "udp${len}_loss_pct" "$(jq '.end.sum.lost_percent' <<<"$j")"
	done
	local pid rss=0 v
	for pid in "${MODE_PIDS[@]}"; do
		v=$(awk '/VmHWM/{print $2}' /proc/"$pid"/status)
		[ "$v" -gt "$rss" ] && rss=$v
	done
	[ ${#MODE_PIDS[@]} -gt 0 ] && record "$m" "$r" rss_mb "$(awk -v k="$rss" 'BEGIN{print k/1024}')"
	return 0
}

# save_status MODE ROUND: with --status, each agent's counters after the
# tests, as `status --json` prints them (modes without agents: nothing).
save_status() {
	[ -n "$STATUS" ] && [ ${#MODE_PIDS[@]} -gt 0 ] || return 0
	mkdir -p "$STATUS"
	local site ns
	for site in a b; do
		ns=$GWA; [ $site = b ] && ns=$GWB
		in_ns "$ns" "$WORK/tunnel-agent" status -c "$WORK/$site.yaml" --state-dir "$WORK/state" --json \
			>"$STATUS/$1-$2-$site.json" 2>&1 || true
	done
}

run_mode() { # MODE ROUND
	log "round $2: $1"
	MODE_PIDS=()
	"mode_$1" up
	wait_path
	measure "$1" "$2"
	save_status "$1" "$2"
	"mode_$1" down
	MODE_PIDS=()
}

# ---- report: median (min–max) of each metric per mode ----
report() {
	local metrics="tcp_up_mbps tcp_down_mbps tcp_4_mbps tcp_up_retr tcp_down_retr tcp_4_retr tcp_idle_pct tcp_softirq_pct udp64_kpps udp64_loss_pct udp1372_kpps udp1372_loss_pct rtt_avg_ms rtt_p99_ms cpu_s_per_gb rss_mb"
	printf '| metric |'; for m in $MODES; do printf ' %s |' "$m"; done; echo
	printf '|---|'; for _ in $MODES; do printf -- '---|'; done; echo
	for k in $metrics; do
		printf '| %s |' "$k"
		for m in $MODES; do
			awk -F'\t' -v m="$m" -v k="$k" '$1==m && $3==k {print $4}' "$RESULTS" | sort -g | awk '
				{a[NR]=$1} END {
					if (NR == 0) { printf " — |"; exit }
					med = NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2
					f = (med >= 100) ? "%.0f" : (med >= 10 ? "%.1f" : "%.3g")
					printf " " f " (" f "–" f ") |", med, a[1], a[NR]
				}'
		done
		echo
	done
}

main() {
	install_tools
	build_binaries
	build_topology
	: >"$RESULTS"
	in_ns "$SRV" true
	start "$SRV" iperf3 -s
	MODE_PIDS=()
	sleep 0.5
	local r m order
	for r in $(seq "$ROUNDS"); do
		order=$MODES
		[ $((r % 2)) = 0 ] && order=$(echo "$MODES" | tr ' ' '\n' | tac | tr '\n' ' ')
		for m in $order; do run_mode "$m" "$r"; done
	done
	{
		echo "Machine: $(nproc) CPU ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(uname -sr), $(free -g | awk '/Mem:/{print $2}') GB"
		echo "wireguard-go $WGGO_VERSION; iperf3 $(iperf3 --version | awk 'NR==1{print $2}'); offloads $([ "$OFFLOADS" = 1 ] && echo on || echo off); $DURATION s per test, $ROUNDS rounds"
		echo "Command: bench/run.sh --duration $DURATION --rounds $ROUNDS --modes \"$MODES\"$([ "$OFFLOADS" = 1 ] && echo ' --offloads')"
		echo
		report
	} | tee "${OUT:-/dev/null}"
	[ -z "$OUT" ] || log "table written to $OUT"
}

main; exit $?
