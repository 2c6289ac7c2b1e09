package ledger

import (
	"fmt"
	"os"
	"time"
)

// OpenExisting is OpenFile for commands that only read or repair (recover, a dry run): it
// creates neither the file nor its directory, so that a mistyped --state-dir is not answered with
// a fresh, empty ledger. A missing ledger is an error wrapping fs.ErrNotExist.
func OpenExisting(path string) (*FileLedger, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLedger, err)
	}
	return &FileLedger{path: path, timeout: 10 * time.Second}, nil
}
