//go:build !linux

package rawip

import "errors"

// Injector is only implemented on Linux.
type Injector struct{}

// Open is only implemented on Linux.
func Open() (*Injector, error) { return nil, errors.ErrUnsupported }

func (inj *Injector) WriteBatch(pkts [][]byte) (int, error) { return 0, errors.ErrUnsupported }
func (inj *Injector) Close() error                          { return nil }
