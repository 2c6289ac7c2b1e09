//go:build !linux

package network

import "github.com/faultline-dev/faultline/injectors"

// Injectors returns nothing outside Linux: iptables, qdiscs and network namespaces are Linux's.
func Injectors(opts ...Option) []injectors.Injector { return nil }
