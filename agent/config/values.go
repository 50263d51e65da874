package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Parsers for single values. Each takes the text the file gave and
// explains what it wants when the text is wrong.

// Limits of an interface MTU: the IPv4 minimum, the largest the kernel
// stores.
const (
	minMTU     = 68
	maxMTU     = 65535
	minIPv6MTU = 1280
)

func nonEmpty(s string) (string, error) {
	if s == "" {
		return "", errors.New("must not be empty")
	}
	return s, nil
}

// parseMTU reads an MTU; 0 means "leave as is".
func parseMTU(s string) (int, error) {
	n, err := strconv.Atoi(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("invalid MTU %q: want a whole number from %d to %d", s, minMTU, maxMTU)
	case n != 0 && (n < minMTU || n > maxMTU):
		return 0, fmt.Errorf("MTU %d is out of range: want %d to %d (or 0 to leave it as is)", n, minMTU, maxMTU)
	}
	return n, nil
}

// parseNetPrefix reads a prefix in masked form (10.0.0.0/24).
func parseNetPrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: %w (want ADDRESS/LENGTH, e.g. 10.0.0.0/24 or 2001:db8::/64)", s, trimmed{err})
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set; did you mean %s?", p, p.Masked())
	}
	return p, nil
}

// parseIfacePrefix reads an interface address with its prefix length
// (11.11.11.1/24); host bits are the point.
func parseIfacePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid address %q: %w (want ADDRESS/LENGTH, e.g. 11.11.11.1/24)", s, trimmed{err})
	}
	return p, nil
}

// parseGateway reads a next-hop address.
func parseGateway(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return netip.Addr{}, fmt.Errorf("invalid IP address %q: %w", s, trimmed{err})
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("%s: leave out the zone (%%%s); the route goes out through veth.peer", s, a.Zone())
	}
	return a, nil
}

// parseAddrPort reads ADDRESS:PORT ([ADDRESS]:PORT for IPv6). An IPv4
// address written in IPv6 form (::ffff:a.b.c.d) is unmapped.
func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil:
		return netip.AddrPort{}, fmt.Errorf("invalid address %q: %w (want ADDRESS:PORT, e.g. 0.0.0.0:50000 or [2001:db8::1]:50000)", s, trimmed{err})
	case ap.Port() == 0:
		return netip.AddrPort{}, fmt.Errorf("port 0 in %q: want a port from 1 to 65535", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// parseKeepalive reads a Go duration ("25s", "1m30s") or 0 (off).
func parseKeepalive(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("invalid duration %q: want a Go duration such as 25s or 1m30s, or 0 to turn keepalives off", s)
	case d < 0:
		return 0, fmt.Errorf("keepalive %s is negative: want a positive duration, or 0 to turn keepalives off", d)
	}
	return d, nil
}

// trimmed shortens net/netip's messages, which repeat the input
// ("netip.ParsePrefix(\"x\"): ParseAddr(\"x\"): unable to parse IP"), to
// their last part.
type trimmed struct{ err error }

func (t trimmed) Error() string {
	s := t.err.Error()
	if i := strings.LastIndex(s, "): "); i >= 0 {
		return s[i+3:]
	}
	return s
}

func (t trimmed) Unwrap() error { return t.err }
