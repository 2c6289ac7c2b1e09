package history_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/faultline-dev/faultline/internal/history"
	"github.com/faultline-dev/faultline/internal/history/historytest"
)

func TestConformance(t *testing.T) {
	historytest.Run(t, func(t *testing.T, opts history.Options) history.Backend {
		s, err := history.Open(context.Background(), filepath.Join(t.TempDir(), "history.db"), opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
