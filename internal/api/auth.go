package api

import "github.com/faultline-dev/faultline/internal/auth"

// Roles a token can have (the token file is shared with faultline proxy serve; see internal/auth).
const (
	RoleAdmin    = auth.RoleAdmin
	RoleReadOnly = auth.RoleReadOnly
)

// principal is who a request authenticated as.
type principal = auth.Principal
