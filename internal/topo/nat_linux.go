package topo

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"tunnel-agent/internal/nsutil"
)

// nftables objects of the NAT router (in its namespace only).
const (
	natTable = "topo_nat"
	natChain = "postrouting"
)

// ErrNoNAT is returned by the NAT methods of a topology built without NAT.
var ErrNoNAT = errors.New("topology has no NAT router")

// installMasquerade (re)writes the NAT router's ruleset in one batch:
//
//	table ip topo_nat {
//	  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//	    oifname "out0" ip saddr 192.168.100.0/24 masquerade
//	    (or, with a port range: ... snat to 198.18.0.1:lo-hi)
//	  }
//	}
//
// lo == 0 masquerades to any port (keeping the source port when free).
func (t *Topology) installMasquerade(lo, hi uint16) error {
	inside := t.NATInside.Masked()
	mask := net.CIDRMask(inside.Bits(), 32)
	tab := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: natTable}
	ch := &nftables.Chain{
		Name:     natChain,
		Table:    tab,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
	}
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(NATOutLink)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: inside.Addr().AsSlice()},
	}
	if lo != 0 {
		// "masquerade to :lo-hi" would need the PROTO_SPECIFIED flag,
		// which expr.Masq cannot send together with ports; out0's address
		// is fixed, so the equivalent "snat to <out0>:lo-hi" does it.
		exprs = append(exprs,
			&expr.Immediate{Register: 1, Data: t.NATOutside.Addr().AsSlice()},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(lo)},
			&expr.Immediate{Register: 3, Data: binaryutil.BigEndian.PutUint16(hi)},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4,
				RegAddrMin: 1, RegProtoMin: 2, RegProtoMax: 3, Specified: true})
	} else {
		exprs = append(exprs, &expr.Masq{})
	}
	h := t.Handle(t.NAT)
	if !h.IsOpen() {
		return fmt.Errorf("topology %s: closed", t.Prefix)
	}
	return nsutil.Do(h, func() error {
		// A lasting connection is dialled here, so its socket lives in
		// the NAT namespace; no other namespace is ever touched.
		c, err := nftables.New(nftables.AsLasting())
		if err != nil {
			return fmt.Errorf("nftables netlink: %w", err)
		}
		defer c.CloseLasting()
		c.AddTable(tab)
		c.AddChain(ch)
		c.FlushChain(ch)
		c.AddRule(&nftables.Rule{Table: tab, Chain: ch, Exprs: exprs})
		if err := c.Flush(); err != nil {
			return fmt.Errorf("install masquerade rule: %w", err)
		}
		return nil
	})
}

// ifname pads an interface name as nftables compares it (IFNAMSIZ bytes).
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// FlushNAT deletes every connection-tracking entry of the NAT router, so
// that the next packets create new mappings (a NAT rebinding, as when a
// home router reboots or its mapping times out). With the default port
// range the new mapping usually keeps the source port; use SetNATPorts to
// force a different external port.
func (t *Topology) FlushNAT() error {
	nl, err := t.natNetlink()
	if err != nil {
		return err
	}
	if err := nl.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("flush conntrack table of %s: %w", t.NAT, err)
	}
	return nil
}

// SetNATPorts makes the NAT router translate GatewayA's flows to source
// ports lo..hi of its outside address (lo == 0: plain masquerade, any
// port, the initial setting) and flushes its conntrack table, so that the
// existing flows get new external ports (a NAT rebinding that GatewayB
// sees as a new source port).
func (t *Topology) SetNATPorts(lo, hi uint16) error {
	if t.NAT == "" {
		return ErrNoNAT
	}
	if lo == 0 && hi != 0 || lo != 0 && hi < lo {
		return fmt.Errorf("topology: bad NAT port range %d-%d", lo, hi)
	}
	if _, err := t.natNetlink(); err != nil {
		return err
	}
	if err := t.installMasquerade(lo, hi); err != nil {
		return fmt.Errorf("masquerade in %s: %w", t.NAT, err)
	}
	t.mu.Lock()
	t.natPort = [2]uint16{lo, hi}
	t.mu.Unlock()
	return t.FlushNAT()
}

// NATPorts returns the masquerade port range set by SetNATPorts (0, 0 =
// any port).
func (t *Topology) NATPorts() (lo, hi uint16) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.natPort[0], t.natPort[1]
}

// Mapping is one connection-tracking entry of the NAT router.
type Mapping struct {
	Proto   uint8          // unix.IPPROTO_UDP, ...
	Inside  netip.AddrPort // original source (GatewayA's address and port)
	Outside netip.AddrPort // the translated source the remote side sees
	Remote  netip.AddrPort // original destination
}

// NATMappings lists the NAT router's IPv4 connection-tracking entries.
func (t *Topology) NATMappings() ([]Mapping, error) {
	nl, err := t.natNetlink()
	if err != nil {
		return nil, err
	}
	flows, err := nl.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("list conntrack table of %s: %w", t.NAT, err)
	}
	out := make([]Mapping, 0, len(flows))
	for _, f := range flows {
		out = append(out, Mapping{
			Proto:   f.Forward.Protocol,
			Inside:  addrPort(f.Forward.SrcIP, f.Forward.SrcPort),
			Outside: addrPort(f.Reverse.DstIP, f.Reverse.DstPort),
			Remote:  addrPort(f.Forward.DstIP, f.Forward.DstPort),
		})
	}
	return out, nil
}

func addrPort(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}

func (t *Topology) natNetlink() (*netlink.Handle, error) {
	if t.NAT == "" {
		return nil, ErrNoNAT
	}
	nl := t.Netlink(t.NAT)
	if nl == nil {
		return nil, fmt.Errorf("topology %s: closed", t.Prefix)
	}
	return nl, nil
}
