package afpacket

import (
	"testing"
	"time"
)

func TestCaptureOptionsDefaults(t *testing.T) {
	o, err := Options{Ring: true}.withDefaults()
	if err != nil || o.RingBlockSize != DefaultRingBlockSize || o.RingBlocks != DefaultRingBlocks ||
		o.RingRetire != DefaultRingRetire || o.retireMillis() != 1 {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
	if o, err := (Options{}).withDefaults(); err != nil || o != (Options{}) {
		t.Fatalf("socket path options changed: %+v, %v", o, err)
	}
	o, _ = Options{Ring: true, RingRetire: 1500 * time.Microsecond}.withDefaults()
	if o.retireMillis() != 2 {
		t.Errorf("1.5ms retire = %dms, want 2 (rounded up)", o.retireMillis())
	}
	for _, bad := range []Options{
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
