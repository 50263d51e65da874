// Package rawip hands IP packets to the local IP stack through raw IPv4
// and IPv6 sockets: the dataplane.Injector of the engine and of WireGuard
// mode in production. The kernel routes each packet by its destination
// as if this host had sent it, and never fragments one (header inclusion):
// the engine checks the packets against the LAN MTU before it injects
// them.
package rawip
