package demo

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netns"

	"tunnel-agent/internal/probe"
)

// showTraffic pings both ways (the client first: it is behind NAT, so the
// VPS learns its endpoint from its first packet), measures a short TCP
// transfer, and prints both agents' counters.
func (d *demo) showTraffic(ctx context.Context) error {
	t := d.t
	ns1, err := netns.GetFromName(t.SiteBNS)
	if err != nil {
		return fmt.Errorf("open %s: %w", t.SiteBNS, err)
	}
	defer ns1.Close()
	client := t.Handle(t.Client)
	if err := d.ping("client host", client, t.SiteBHost.Addr()); err != nil {
		return err
	}
	if err := d.ping("VPS host in "+t.SiteBNS, ns1, t.ClientAddr.Addr()); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	const size = 64 << 20
	d.say("TCP: sending %d MiB from the client host to %s:5201 through the tunnel (SHA-256 checked)", size>>20, t.SiteBHost.Addr())
	res, err := probe.TCPTransfer(client, ns1, netip.AddrPortFrom(t.SiteBHost.Addr(), 5201), size, 60*time.Second)
	if err != nil {
		return fmt.Errorf("TCP transfer: %w", err)
	}
	d.say("TCP: %d bytes in %s = %.0f Mbit/s, checksums match: %v", res.Bytes, res.Duration.Round(time.Millisecond),
		res.Throughput/1e6, res.OK())
	if !res.OK() {
		return fmt.Errorf("TCP transfer: %d of %d bytes arrived or their SHA-256 differs", res.Bytes, size)
	}
	d.tcp = &res
	for _, a := range d.agents {
		var st bytes.Buffer
		if a.status(&st) == nil {
			d.say("tunnel-agent status of the %s site:", a.site)
			_, _ = d.out.Write(st.Bytes())
		}
	}
	return nil
}

func (d *demo) ping(from string, ns netns.NsHandle, dst netip.Addr) error {
	d.say("ping from the %s to %s (4 echo requests)", from, dst)
	r, err := probe.Ping(ns, dst, 4, 200*time.Millisecond, 2*time.Second, 84)
	if err != nil {
		return fmt.Errorf("ping %s: %w", dst, err)
	}
	d.say("    %d/%d replies, average RTT %s", r.Received, r.Sent, r.Avg.Round(time.Microsecond))
	if r.Received == 0 {
		return fmt.Errorf("ping from the %s to %s: no replies", from, dst)
	}
	return nil
}
