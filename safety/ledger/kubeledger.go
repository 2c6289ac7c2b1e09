package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Labels on ledger objects; `kubectl get cm -l faultline.dev/ledger` lists the ledger.
const (
	LabelLedger  = "faultline.dev/ledger"
	LabelRun     = "faultline.dev/run"
	LabelState   = "faultline.dev/state"
	ledgerKey    = "entry.json"
	ledgerPrefix = "faultline-ledger-"
)

// KubeLedger is a Ledger kept in the cluster, one ConfigMap per fault, so that it survives the
// pod of the daemon that wrote it: a new leader reads what a dead one applied and reverts it.
// A write is durable when the API server acknowledged it (etcd has committed it).
type KubeLedger struct {
	Client    kubernetes.Interface
	Namespace string
}

// Where implements Ledger.
func (l *KubeLedger) Where() string {
	return "configmaps -l " + LabelLedger + " in namespace " + l.Namespace
}

// objectName maps an entry ID (which may hold characters a name cannot) to a stable DNS-1123 name.
func objectName(id string) string {
	h := sha256.Sum256([]byte(id))
	var b strings.Builder
	for _, r := range strings.ToLower(id) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	readable := strings.Trim(b.String(), "-")
	if len(readable) > 200 {
		readable = readable[:200]
	}
	return ledgerPrefix + readable + "-" + hex.EncodeToString(h[:4])
}

func (l *KubeLedger) object(e *Entry) (*corev1.ConfigMap, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode entry %s: %w", e.ID, err)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: objectName(e.ID), Namespace: l.Namespace,
			Labels: map[string]string{LabelLedger: "v1", LabelRun: e.RunID, LabelState: e.State,
				"app.kubernetes.io/managed-by": "faultline"},
		},
		Data: map[string]string{ledgerKey: string(b)},
	}, nil
}

// Put implements Ledger. Each entry is its own object, so Put of several is not atomic; the
// engine only puts several at once to mark them reverted, where a partial write is harmless
// (recover reverts again, idempotently).
func (l *KubeLedger) Put(ctx context.Context, entries ...*Entry) error {
	for _, e := range entries {
		cm, err := l.object(e)
		if err != nil {
			return err
		}
		cms := l.Client.CoreV1().ConfigMaps(l.Namespace)
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
				cur, err := cms.Get(ctx, cm.Name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				cm.ResourceVersion = cur.ResourceVersion
				_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
				return err
			})
		}
		if err != nil {
			return fmt.Errorf("%w: write %s/%s: %w", ErrLedger, l.Namespace, cm.Name, err)
		}
	}
	return nil
}

// Modify implements Ledger with optimistic concurrency (retried on conflict).
func (l *KubeLedger) Modify(ctx context.Context, id string, fn func(*Entry)) error {
	cms := l.Client.CoreV1().ConfigMaps(l.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := cms.Get(ctx, objectName(id), metav1.GetOptions{})
		if err != nil {
			return err
		}
		var e Entry
		if err := json.Unmarshal([]byte(cur.Data[ledgerKey]), &e); err != nil {
			return fmt.Errorf("decode entry %s: %w", id, err)
		}
		fn(&e)
		next, err := l.object(&e)
		if err != nil {
			return err
		}
		next.ResourceVersion = cur.ResourceVersion
		_, err = cms.Update(ctx, next, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: modify %s: %w", ErrLedger, id, err)
	}
	return nil
}

// Entries implements Ledger.
func (l *KubeLedger) Entries(ctx context.Context, keep func(*Entry) bool) ([]*Entry, error) {
	list, err := l.Client.CoreV1().ConfigMaps(l.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelLedger})
	if err != nil {
		return nil, fmt.Errorf("%w: list %s: %w", ErrLedger, l.Namespace, err)
	}
	var out []*Entry
	for _, cm := range list.Items {
		var e Entry
		if err := json.Unmarshal([]byte(cm.Data[ledgerKey]), &e); err != nil {
			return nil, fmt.Errorf("%w: decode %s: %w", ErrLedger, cm.Name, err)
		}
		if keep == nil || keep(&e) {
			out = append(out, &e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Prune implements Ledger.
func (l *KubeLedger) Prune(ctx context.Context, age time.Duration) (int, error) {
	cutoff := time.Now().Add(-age)
	old, err := l.Entries(ctx, func(e *Entry) bool { return !e.Open() && e.RevertedAt != nil && e.RevertedAt.Before(cutoff) })
	if err != nil {
		return 0, err
	}
	for _, e := range old {
		err := l.Client.CoreV1().ConfigMaps(l.Namespace).Delete(ctx, objectName(e.ID), metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return 0, fmt.Errorf("%w: prune %s: %w", ErrLedger, e.ID, err)
		}
	}
	return len(old), nil
}

var _ Ledger = (*KubeLedger)(nil)
