package topo

import (
	"fmt"
	"regexp"
	"strings"
)

// SiteAWireGuardYAML is SiteAYAML in wireguard mode: keyFile holds site
// A's private key, peerPublicKey is site B's public key (base64).
func (t *Topology) SiteAWireGuardYAML(site, keyFile, peerPublicKey string) string {
	return WireGuardYAML(t.SiteAYAML(site), keyFile, peerPublicKey)
}

// SiteBWireGuardYAML is SiteBYAML in wireguard mode: keyFile holds site
// B's private key, peerPublicKey is site A's public key (base64).
func (t *Topology) SiteBWireGuardYAML(site, keyFile, peerPublicKey string) string {
	return WireGuardYAML(t.SiteBYAML(site), keyFile, peerPublicKey)
}

// reFirstPeer is the first peer's name line of a site file.
var reFirstPeer = regexp.MustCompile(`(?m)^    - name: .*\n`)

// WireGuardYAML turns a one-peer plain site file of this package into
// wireguard mode: tunnel.mode and private_key_file, and the peer's
// public_key.
func WireGuardYAML(plain, keyFile, peerPublicKey string) string {
	out := strings.Replace(plain, "\ntunnel:\n",
		fmt.Sprintf("\ntunnel:\n  mode: wireguard\n  private_key_file: %s\n", keyFile), 1)
	loc := reFirstPeer.FindStringIndex(out)
	if loc == nil {
		return out // no peer: validation will say so
	}
	return out[:loc[1]] + fmt.Sprintf("      public_key: %s\n", peerPublicKey) + out[loc[1]:]
}
