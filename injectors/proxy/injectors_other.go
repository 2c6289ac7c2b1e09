//go:build !linux

package proxy

import "github.com/faultline-dev/faultline/injectors"

// Injectors returns nothing outside Linux: the transparent proxy needs iptables, network
// namespaces and SO_ORIGINAL_DST.
func Injectors() []injectors.Injector { return nil }
