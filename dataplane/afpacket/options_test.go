package dataplane

import (
	"testing"
	"time"
)

func TestCaptureOptionsDefaults(t *testing.T) {
	o, err := CaptureOptions{Ring: true}.withDefaults()
	if err != nil || o.RingBlockSize != DefaultRingBlockSize || o.RingBlocks != DefaultRingBlocks ||
		o.RingRetire != DefaultRingRetire || o.retireMillis() != 1 {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
	if o, err := (CaptureOptions{}).withDefaults(); err != nil || o != (CaptureOptions{}) {
		t.Fatalf("socket path options changed: %+v, %v", o, err)
	}
	o, _ = CaptureOptions{Ring: true, RingRetire: 1500 * time.Microsecond}.withDefaults()
	if o.retireMillis() != 2 {
		t.Errorf("1.5ms retire = %dms, want 2 (rounded up)", o.retireMillis())
	}
	for _, bad := range []CaptureOptions{
		{Ring: true, RingBlockSize: 64 << 10},
		{Ring: true, RingBlockSize: 128<<10 + 1},
		{Ring: true, RingBlocks: 1},
		{Ring: true, RingBlocks: -3},
		{Ring: true, RingBlockSize: 1 << 20, RingBlocks: 2048},
		{Ring: true, RingRetire: -1},
		{Ring: true, RingRetire: 2 * MaxRingRetire},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
