package network

import "github.com/faultline-dev/faultline/injectors"

// BreakFamily makes the prepared iptables action add a rule iptables refuses (port 70000) to the
// given family ("ipv4" or "ipv6"), so that Apply fails for real half way.
func BreakFamily(a injectors.Action, fam string) { a.(*ruleAction).breakFamily = family(fam) }

// TbfHandle is the handle of the qdisc a bandwidth fault installs.
const TbfHandle = tbfHandle
