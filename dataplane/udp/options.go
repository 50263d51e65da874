package udp

// Options chooses the offloads of a Transport (Listen). The zero value
// uses both where the kernel allows them.
type Options struct {
	// DisableGRO: do not ask for UDP_GRO (gro_linux.go); the kernel then
	// hands over every datagram on its own, as it does when it refuses
	// the option.
	DisableGRO bool
	// DisableGSO: send every datagram as a message of its own, never a
	// UDP_SEGMENT run (gso_linux.go).
	DisableGSO bool
}
