package config

import (
	"fmt"
	"regexp"
	"strings"
)

// validate runs the checks that look at names and at more than one value.
// Values that did not parse are zero here and are skipped. Checks across
// sections run only when the file's shape decoded cleanly, since a part
// that did not decode would make them report nonsense.
func validate(cfg *Config, host HostInfo, ps *problems) {
	v := validator{cfg: cfg, ps: ps}
	v.names()
	for i := range cfg.Namespaces {
		v.namespace(i)
	}
	v.endpoints()
	v.wireguard()
	v.dataplane() // dataplane.go
	if !ps.clean() {
		return
	}
	v.namespaceClashes()
	v.lanInterface(host)
	v.peerClashes()
	v.localPrefixes()
	v.blackhole()
	if host != nil {
		v.hostChecks(host) // validate_host.go
	}
}

type validator struct {
	cfg *Config
	ps  *problems
}

// reName is what site, namespace and peer names may contain.
var reName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// checkName checks a site, namespace or peer name (it may end up in a
// file name).
func checkName(s string) error {
	if !reName.MatchString(s) || s == "." || s == ".." {
		return fmt.Errorf("invalid name %q: use 1 to 64 letters, digits, '.', '_' or '-' (not \".\" or \"..\")", s)
	}
	return nil
}

// checkIfName checks an interface name. It refuses what the kernel
// refuses (dev_valid_name: empty, 16 bytes or more, "." and "..", '/', ':'
// and white space; "all" and "default", which name sysctl directories)
// and what it rewrites: a '%' makes the name a template ("cv%d" becomes
// "cv0"), so the agent would create a link it cannot find again. Bytes
// outside printable ASCII are refused too (the kernel takes some of them
// for white space).
func checkIfName(s string) error {
	bad := len(s) > 15 || s == "." || s == ".." || s == "all" || s == "default"
	for i := 0; i < len(s) && !bad; i++ {
		bad = s[i] <= ' ' || s[i] >= 0x7f || strings.IndexByte("%/:", s[i]) >= 0
	}
	if bad {
		return fmt.Errorf("invalid interface name %q: use 1 to 15 printable ASCII characters without '%%', '/', ':' or spaces"+
			" (not \".\", \"..\", \"all\" or \"default\")", s)
	}
	return nil
}

// check reports err, if any, at path. Empty values are skipped: they are
// reported as missing already.
func (v validator) check(path, value string, checkFn func(string) error) {
	if value == "" {
		return
	}
	if err := checkFn(value); err != nil {
		v.ps.add(path, nil, err)
	}
}

func (v validator) names() {
	v.check("site", v.cfg.Site, checkName)
	v.check("lan.interface", v.cfg.LAN.Interface, checkIfName)
	for i, ns := range v.cfg.Namespaces {
		path := fmt.Sprintf("namespaces[%d]", i)
		v.check(path+".name", ns.Name, checkName)
		v.check(path+".veth.host", ns.Veth.Host, checkIfName)
		v.check(path+".veth.peer", ns.Veth.Peer, checkIfName)
	}
	for i, p := range v.cfg.Tunnel.Peers {
		v.check(fmt.Sprintf("tunnel.peers[%d].name", i), p.Name, checkName)
	}
}

// namespace checks one namespace on its own.
func (v validator) namespace(i int) {
	ns := v.cfg.Namespaces[i]
	path := fmt.Sprintf("namespaces[%d]", i)
	switch {
	case ns.Veth.Peer == "":
	case ns.Veth.Peer == ns.Veth.Host:
		v.ps.addf(path+".veth.peer", nil, "the veth ends need different names (both are %q)", ns.Veth.Peer)
	case ns.Veth.Peer == "lo":
		v.ps.addf(path+".veth.peer", nil, `"lo" is the namespace's loopback interface; choose another name`)
	}
	v.namespaceAddresses(path, ns)
	v.namespaceGateway(path, ns)
	v.namespace6(path, ns)
	if ns.Veth.MTU != 0 && ns.Veth.MTU < minIPv6MTU && ns.Address.Addr().Is6() {
		v.ps.addf(path+".veth.mtu", nil, "MTU %d is below %d, the IPv6 minimum; the kernel would drop the IPv6 address", ns.Veth.MTU, minIPv6MTU)
	}
}

// namespaceAddresses checks that the two ends of the veth share a subnet.
func (v validator) namespaceAddresses(path string, ns Namespace) {
	h, a := ns.HostAddress, ns.Address
	switch {
	case !h.IsValid() || !a.IsValid():
	case h.Addr().Is4() != a.Addr().Is4():
		v.ps.addf(path+".address", nil, "%s and host_address %s are of different IP families", a, h)
	case h.Masked() != a.Masked():
		v.ps.addf(path+".address", nil, "%s is not in the same subnet as host_address %s (want both in %s)", a, h, h.Masked())
	case h.Addr() == a.Addr():
		v.ps.addf(path+".address", nil, "%s is also host_address; the two ends of the veth need different addresses", a.Addr())
	}
}

// namespaceGateway checks that the gateway is a neighbour on the veth.
func (v validator) namespaceGateway(path string, ns Namespace) {
	gw, a := ns.Gateway, ns.Address
	switch {
	case !gw.IsValid() || !a.IsValid():
	case !a.Masked().Contains(gw):
		v.ps.addf(path+".gateway", nil, "%s is not inside address's subnet %s; the namespace could not reach it", gw, a.Masked())
	case gw == a.Addr():
		v.ps.addf(path+".gateway", nil, "%s is the namespace's own address; use host_address (%s) or another neighbour", gw, ns.HostAddress.Addr())
	}
}

// endpoints checks each peer endpoint against the listen address.
func (v validator) endpoints() {
	listen := v.cfg.Tunnel.Listen.Addr()
	for i, p := range v.cfg.Tunnel.Peers {
		ep := p.Endpoint.Addr()
		path := fmt.Sprintf("tunnel.peers[%d].endpoint", i)
		switch {
		case !ep.IsValid():
		case ep.IsUnspecified():
			v.ps.addf(path, nil, "%s is not a peer address; leave endpoint out to learn the peer's address", ep)
		case !listen.IsValid():
		case listen.Is4() && ep.Is6():
			v.ps.addf(path, nil, "%s is IPv6 but tunnel.listen %s is IPv4; listen on [::]:port to reach both", ep, listen)
		case listen.Is6() && !listen.IsUnspecified() && ep.Is4():
			v.ps.addf(path, nil, "%s is IPv4 but tunnel.listen %s is IPv6", ep, listen)
		}
	}
}
