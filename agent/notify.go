package agent

import (
	"fmt"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// The service manager protocol (sd_notify) for Type=notify units, through
// go-systemd (osSystem.notify): a no-op when NOTIFY_SOCKET is not set (not
// under systemd).

// notifyReady says the host is configured and the dataplane runs.
func notifyReady(o *options) { sdNotify(o, daemon.SdNotifyReady) }

// notifyReloading says a reload started (READY=1 follows when it ends).
// systemd 253 and later want the monotonic time with it.
func notifyReloading(o *options) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	sdNotify(o, fmt.Sprintf("%s\nMONOTONIC_USEC=%d", daemon.SdNotifyReloading, ts.Nano()/1000))
}

// notifyStopping says the agent is shutting down and reverting the host.
func notifyStopping(o *options) { sdNotify(o, daemon.SdNotifyStopping) }

func sdNotify(o *options, state string) {
	if err := o.sys.notify(state); err != nil {
		o.log.Warn("cannot notify the service manager", "state", state, "err", err)
	}
}
