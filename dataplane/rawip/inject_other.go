//go:build !linux

package dataplane

import "errors"

// RawInjector is only implemented on Linux.
type RawInjector struct{}

// OpenInjector is only implemented on Linux.
func OpenInjector() (*RawInjector, error) { return nil, errors.ErrUnsupported }

func (inj *RawInjector) WriteBatch(pkts [][]byte) (int, error) { return 0, errors.ErrUnsupported }
func (inj *RawInjector) Close() error                          { return nil }
