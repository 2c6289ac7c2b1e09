package runbooks

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Digest identifies a runbook's content: "sha256:" and the hex SHA-256 of its canonical JSON form.
// Comments, key order and YAML styling do not change it; any change of meaning does. Results
// carry it so that a baseline comparison can warn when the runbook changed between two runs.
func Digest(rb *Runbook) (string, error) {
	b, err := json.Marshal(rb)
	if err != nil {
		return "", fmt.Errorf("digest runbook: %w", err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
