//go:build !faultline_testhooks

package main

// holdHook is compiled in only with the faultline_testhooks build tag, which the crash-safety
// tests build their binary with (holdhook_testhooks.go): a shipped binary cannot be told by an
// environment variable to stop in the middle of injecting.
func holdHook(string) func(string) { return nil }
