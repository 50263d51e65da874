package agent

import (
	"fmt"
	"log/slog"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// The service manager protocol (sd_notify) for Type=notify units, through
// go-systemd: a no-op when NOTIFY_SOCKET is not set (not under systemd).

// notifyReady says the host is configured and the dataplane runs.
func notifyReady(log *slog.Logger) { sdNotify(log, daemon.SdNotifyReady) }

// notifyReloading says a reload started (READY=1 follows when it ends).
// systemd 253 and later want the monotonic time with it.
func notifyReloading(log *slog.Logger) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	sdNotify(log, fmt.Sprintf("%s\nMONOTONIC_USEC=%d", daemon.SdNotifyReloading, ts.Nano()/1000))
}

// notifyStopping says the agent is shutting down and reverting the host.
func notifyStopping(log *slog.Logger) { sdNotify(log, daemon.SdNotifyStopping) }

func sdNotify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("cannot notify the service manager", "state", state, "err", err)
	}
}
