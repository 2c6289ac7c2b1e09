package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
	"github.com/vishvananda/netlink"
)

// tbfHandle is the handle of the tbf qdisc a bandwidth fault installs ("fa17:"): revert only ever
// removes a root qdisc that carries it.
const tbfHandle uint32 = 0xfa17 << 16

type bandwidthInjector struct {
	cfg *config
}

func (b *bandwidthInjector) Kind() string { return KindBandwidth }

// qdiscRecord is a root qdisc as the ledger keeps it.
type qdiscRecord struct {
	Type   string `json:"type"`
	Handle string `json:"handle"`
	// Default is true for the qdisc the kernel attached by itself (handle 0:); it comes back by
	// deleting whatever replaced it.
	Default bool `json:"default"`
	// Params is the netlink description of an explicitly configured qdisc, to recreate it.
	Params json.RawMessage `json:"params,omitempty"`
}

type bandwidthRecord struct {
	Version   int         `json:"version"`
	RunID     string      `json:"runID"`
	Fault     string      `json:"fault"`
	Target    Target      `json:"target"`
	Interface string      `json:"interface"`
	Original  qdiscRecord `json:"original"`
	// RateBytes, BurstBytes and LimitBytes are the tbf settings (bytes per second, bytes).
	RateBytes  uint64 `json:"rateBytes"`
	BurstBytes uint32 `json:"burstBytes"`
	LimitBytes uint32 `json:"limitBytes"`
}

type bandwidthAction struct {
	rec bandwidthRecord
}

// restorable builds an empty qdisc of a type whose every setting netlink reads back and writes
// again, so that it can be recreated exactly; nil for any other type. Only types whose round trip
// TestBandwidthRestoresTheOriginalQdisc has verified on a real kernel belong here (fq_codel, fq
// and sfq are candidates, untested because the project's kernel lacks them); anything else is
// refused at Prepare, which is cheaper than a revert that is not exact.
func restorable(typ string) netlink.Qdisc {
	switch typ {
	case "tbf":
		return &netlink.Tbf{}
	case "pfifo_fast":
		return &netlink.PfifoFast{}
	}
	return nil
}

func handleStr(h uint32) string {
	if h == 0 {
		return "0:"
	}
	return netlink.HandleStr(h)
}

// recordQdisc turns a live root qdisc into its ledger form, or refuses one that could not be put
// back exactly.
func recordQdisc(q netlink.Qdisc, where string) (qdiscRecord, error) {
	a := q.Attrs()
	r := qdiscRecord{Type: q.Type(), Handle: handleStr(a.Handle)}
	if major, _ := netlink.MajorMinor(a.Handle); major == 0 {
		r.Default = true
		return r, nil
	}
	if restorable(q.Type()) == nil {
		return qdiscRecord{}, policy.Refusef("bandwidth.originalQdisc", "%s has root qdisc %s %s, which faultline cannot restore exactly after a bandwidth fault (it restores kernel defaults and explicit tbf and pfifo_fast qdiscs)", where, q.Type(), r.Handle)
	}
	params, err := json.Marshal(withoutStats(q))
	if err != nil {
		return qdiscRecord{}, fmt.Errorf("encode qdisc %s: %w", q.Type(), err)
	}
	r.Params = params
	return r, nil
}

// withoutStats drops what changes by itself (counters, reference count) from a qdisc.
func withoutStats(q netlink.Qdisc) netlink.Qdisc {
	a := q.Attrs()
	a.Statistics = nil
	a.Refcnt = 0
	return q
}

func (r qdiscRecord) same(o qdiscRecord) bool {
	return r.Type == o.Type && r.Handle == o.Handle && r.Default == o.Default && string(r.Params) == string(o.Params)
}

func rootQdisc(h *netlink.Handle, link netlink.Link) (netlink.Qdisc, error) {
	qs, err := h.QdiscList(link)
	if err != nil {
		return nil, fmt.Errorf("list qdiscs of %s: %w", link.Attrs().Name, err)
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_ROOT {
			return q, nil
		}
	}
	return nil, fmt.Errorf("%s has no root qdisc", link.Attrs().Name)
}

func (b *bandwidthInjector) Prepare(ctx context.Context, f runbooks.Fault, env injectors.Env) (injectors.Action, error) {
	spec, ok := f.Spec().(*runbooks.Bandwidth)
	if !ok {
		return nil, fmt.Errorf("bandwidth injector got a %q fault", f.Kind())
	}
	if err := RequireNetAdmin(); err != nil {
		return nil, err
	}
	tgt, err := resolveTarget(b.cfg, spec.Netns, spec.NetnsPath)
	if err != nil {
		return nil, err
	}
	bits, err := runbooks.ParseRate(spec.Rate)
	if err != nil {
		return nil, err
	}
	h, err := tgt.Netlink()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	link, err := h.LinkByName(spec.Interface)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, policy.Refusef("bandwidth.interface", "there is no interface %q in netns %s", spec.Interface, tgt.Label)
	}
	if err != nil {
		return nil, fmt.Errorf("interface %s in netns %s: %w", spec.Interface, tgt.Label, err)
	}
	where := fmt.Sprintf("interface %s in netns %s", spec.Interface, tgt.Label)
	root, err := rootQdisc(h, link)
	if err != nil {
		return nil, err
	}
	if root.Attrs().Handle == tbfHandle {
		return nil, policy.Refusef("bandwidth.interface", "%s is already limited by a faultline bandwidth fault (tbf fa17:)", where)
	}
	orig, err := recordQdisc(root, where)
	if err != nil {
		return nil, err
	}

	rate := bits / 8
	// The bucket must hold at least one full frame, or full-size packets are never sent.
	frame := uint32(link.Attrs().MTU + 14)
	burst := uint32(max(min(rate/100, math.MaxUint32), uint64(3200), uint64(2*frame)))
	if spec.Burst != "" {
		if burst, err = runbooks.ParseSize(spec.Burst); err != nil {
			return nil, err
		}
		if burst < frame {
			return nil, policy.Refusef("bandwidth.burst", "burst %s (%d bytes) is smaller than one frame on %s (%d bytes): no full-size packet would ever pass", spec.Burst, burst, where, frame)
		}
	}
	var limit uint64
	if spec.Limit != "" {
		l, err := runbooks.ParseSize(spec.Limit)
		if err != nil {
			return nil, err
		}
		limit = uint64(l)
	} else {
		latency := spec.Latency.D()
		if latency == 0 {
			latency = defaultLatency
		}
		limit = uint64(float64(rate)*latency.Seconds()) + uint64(burst) // as tc computes it
	}
	name := f.Name
	if name == "" {
		name = KindBandwidth
	}
	return &bandwidthAction{rec: bandwidthRecord{
		Version: 1, RunID: env.RunID, Fault: name, Target: tgt, Interface: spec.Interface, Original: orig,
		RateBytes: rate, BurstBytes: burst, LimitBytes: uint32(min(limit, math.MaxUint32)),
	}}, nil
}

func (a *bandwidthAction) Targets() []string {
	return []string{fmt.Sprintf("netns %s: interface %s, outgoing traffic limited to %s (root qdisc %s %s restored after)",
		a.rec.Target.Label, a.rec.Interface, formatRate(a.rec.RateBytes*8), a.rec.Original.Type, a.rec.Original.Handle)}
}

func (a *bandwidthAction) Record() (json.RawMessage, error) {
	b, err := json.Marshal(a.rec)
	if err != nil {
		return nil, fmt.Errorf("encode bandwidth record: %w", err)
	}
	return b, nil
}

// Describe says what Apply put in place, in tc's words.
func (a *bandwidthAction) Describe() []string {
	prefix := "tc"
	if a.rec.Target.Path != "" {
		prefix = fmt.Sprintf("[netns %s] tc", a.rec.Target.Label)
	}
	return []string{
		fmt.Sprintf("%s qdisc replace dev %s root handle fa17: tbf rate %s burst %db limit %db", prefix, a.rec.Interface, formatRate(a.rec.RateBytes*8), a.rec.BurstBytes, a.rec.LimitBytes),
		fmt.Sprintf("(replaces root qdisc %s %s, restored on revert)", a.rec.Original.Type, a.rec.Original.Handle),
	}
}

func (a *bandwidthAction) tbf(linkIndex int) *netlink.Tbf {
	return &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: linkIndex, Handle: tbfHandle, Parent: netlink.HANDLE_ROOT},
		Rate:       a.rec.RateBytes,
		Limit:      a.rec.LimitBytes,
		Buffer:     netlink.Xmittime(a.rec.RateBytes, a.rec.BurstBytes),
	}
}

// Apply records the root qdisc again if it changed since Prepare, then replaces it with the tbf.
func (a *bandwidthAction) Apply(ctx context.Context, rec injectors.Recorder) error {
	h, err := a.rec.Target.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	where := fmt.Sprintf("interface %s in netns %s", a.rec.Interface, a.rec.Target.Label)
	link, err := h.LinkByName(a.rec.Interface)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	root, err := rootQdisc(h, link)
	if err != nil {
		return err
	}
	if root.Attrs().Handle == tbfHandle {
		return fmt.Errorf("%s is already limited by a faultline bandwidth fault", where)
	}
	orig, err := recordQdisc(root, where)
	if err != nil {
		return err
	}
	if !orig.same(a.rec.Original) {
		a.rec.Original = orig
		raw, err := a.Record()
		if err != nil {
			return err
		}
		if err := rec(ctx, raw); err != nil {
			return fmt.Errorf("record the original qdisc of %s: %w", where, err)
		}
	}
	if err := h.QdiscReplace(a.tbf(link.Attrs().Index)); err != nil {
		return fmt.Errorf("install tbf on %s: %w", where, err)
	}
	return nil
}

// Revert puts the original root qdisc back if the root is still the fault's tbf.
func (b *bandwidthInjector) Revert(ctx context.Context, raw json.RawMessage, env injectors.Env) error {
	var rec bandwidthRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return fmt.Errorf("decode bandwidth record: %w", err)
	}
	tgt, gone, err := rec.Target.Locate()
	if err != nil {
		return fmt.Errorf("revert bandwidth on %s: %w", rec.Interface, err)
	}
	if gone {
		logger(env).Info("network namespace is gone, and the fault's qdisc with it", "netns", rec.Target.Label, "interface", rec.Interface)
		return nil
	}
	h, err := tgt.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	where := fmt.Sprintf("interface %s in netns %s", rec.Interface, rec.Target.Label)
	link, err := h.LinkByName(rec.Interface)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		logger(env).Info("interface is gone, and the fault's qdisc with it", "netns", rec.Target.Label, "interface", rec.Interface)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	root, err := rootQdisc(h, link)
	if err != nil {
		return err
	}
	if root.Type() != "tbf" || root.Attrs().Handle != tbfHandle {
		return nil // never applied, or already reverted
	}
	if rec.Original.Default {
		if err := h.QdiscDel(root); err != nil {
			return fmt.Errorf("remove tbf from %s: %w", where, err)
		}
		return nil
	}
	q := restorable(rec.Original.Type)
	if q == nil {
		return fmt.Errorf("record of %s holds root qdisc type %q, which cannot be restored", where, rec.Original.Type)
	}
	if err := json.Unmarshal(rec.Original.Params, q); err != nil {
		return fmt.Errorf("decode original qdisc of %s: %w", where, err)
	}
	q.Attrs().LinkIndex = link.Attrs().Index
	q.Attrs().Parent = netlink.HANDLE_ROOT
	if err := h.QdiscReplace(q); err != nil {
		return fmt.Errorf("restore root qdisc %s %s on %s: %w", rec.Original.Type, rec.Original.Handle, where, err)
	}
	// Check the restore was exact, so that a difference is loud rather than silent.
	root, err = rootQdisc(h, link)
	if err != nil {
		return err
	}
	now, err := recordQdisc(root, where)
	if err != nil {
		return err
	}
	if !now.same(rec.Original) {
		return fmt.Errorf("restored root qdisc of %s differs from the original: now %s %s %s, was %s %s %s", where, now.Type, now.Handle, now.Params, rec.Original.Type, rec.Original.Handle, rec.Original.Params)
	}
	return nil
}

func formatRate(bits uint64) string {
	switch {
	case bits >= 1e9 && bits%1e6 == 0:
		return fmt.Sprintf("%gGbit", float64(bits)/1e9)
	case bits >= 1e6:
		return fmt.Sprintf("%gMbit", float64(bits)/1e6)
	case bits >= 1e3:
		return fmt.Sprintf("%gKbit", float64(bits)/1e3)
	}
	return fmt.Sprintf("%dbit", bits)
}
