package policy

import "fmt"

// RefusedError is a refusal before anything was touched: a target outside policy, a namespace
// that does not exist, a missing capability. The command maps it to exit code 4.
type RefusedError struct {
	Rule string // the rule that refused, e.g. "policy.maxTargets", "capability CAP_NET_ADMIN"
	Msg  string
}

func (e *RefusedError) Error() string {
	if e.Rule == "" {
		return e.Msg
	}
	return fmt.Sprintf("refused by %s: %s", e.Rule, e.Msg)
}

// Refusef builds a *RefusedError.
func Refusef(rule, format string, args ...any) error {
	return &RefusedError{Rule: rule, Msg: fmt.Sprintf(format, args...)}
}
