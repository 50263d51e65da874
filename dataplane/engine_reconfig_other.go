//go:build !linux

package dataplane

func transientCaptureErr(error) bool { return false }
