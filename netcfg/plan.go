package netcfg

// Entries turns a desired state into the ordered list of host changes:
// namespaces, veth pairs, then per link MTU, features, addresses and up,
// and routes last (a gateway needs its link up and addressed). Revert
// undoes them in the reverse order.
func Entries(d Desired) []Entry {
	var out []Entry
	for _, ns := range d.Namespaces {
		out = append(out, Entry{Kind: KindNamespace, NS: ns})
	}
	for _, v := range d.Veths {
		out = append(out, Entry{Kind: KindVeth, Link: v.Name, Peer: v.Peer, PeerNS: v.PeerNS})
	}
	for _, l := range d.Links {
		out = append(out, linkEntries(l)...)
	}
	for _, r := range d.Routes {
		out = append(out, Entry{Kind: KindRoute, NS: r.NS, Route: routeSpec(r)})
	}
	return out
}

func linkEntries(l Link) []Entry {
	var out []Entry
	base := Entry{NS: l.NS, Link: l.Name}
	if l.MTU > 0 {
		e := base
		e.Kind, e.MTU = KindMTU, l.MTU
		out = append(out, e)
	}
	if len(l.Features) > 0 {
		e := base
		e.Kind, e.Features = KindFeatures, map[string]bool{}
		for _, f := range l.Features {
			e.Features[f.Name] = f.On
		}
		out = append(out, e)
	}
	for _, p := range l.Addrs {
		e := base
		e.Kind, e.Prefix = KindAddr, p
		out = append(out, e)
	}
	if l.Up {
		e := base
		e.Kind = KindUp
		out = append(out, e)
	}
	return out
}

// routeSpec is the route the agent adds for r: protocol RouteProtocol and
// the family's default metric, the metric the kernel gives a route added
// without one (so that `ip route add` of the same destination clashes
// with it, as it would with the agent's).
func routeSpec(r Route) *RouteSpec {
	dst := r.Dst.Masked()
	s := &RouteSpec{Dst: dst, Protocol: RouteProtocol, Type: RouteUnicast, Metric: DefaultMetric(dst)}
	if r.Blackhole {
		s.Type = RouteBlackhole
	} else {
		s.Gw = r.Gw
	}
	return s
}
