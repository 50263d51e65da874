package dataplane

import (
	"errors"

	"golang.org/x/sys/unix"
)

// transientCaptureErr: an AF_PACKET socket reports ENETDOWN once when its
// interface goes down (or away); the socket stays usable (or is replaced
// when the interface is re-created), so the capture loop carries on.
func transientCaptureErr(err error) bool { return errors.Is(err, unix.ENETDOWN) }
