package ebpf

// The programs are compiled ahead of time and committed (tunnel_bpfel.o,
// tunnel_bpfeb.o and their Go bindings), so that building the agent needs
// no clang. .ci/run regenerates them with Debian's clang and fails on any
// difference. bpf2go pins the flags that would make the output depend on
// the build machine (no clang version, debug paths relative).
//
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -type settings -type peer -type endpoint_key -type lpm4_key -type lpm6_key -type peer_stats tunnel bpf/tunnel.c -- -mcpu=v3 -Wall -Werror -I bpf/include
