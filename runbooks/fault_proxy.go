package runbooks

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Latency delays the TCP (and, with netem, any) traffic a NetworkTarget selects. On a kernel with
// the netem qdisc it is applied with netem; elsewhere a transparent proxy inside the target
// namespace holds each chunk of data for the delay (iptables REDIRECT to a faultline listener).
type Latency struct {
	NetworkTarget `yaml:",inline" json:",inline"`
	Delay         Duration `yaml:"delay" json:"delay" doc:"Delay added to the selected traffic, e.g. 50ms. Every selected connection's round trip grows by this much."`
	Jitter        Duration `yaml:"jitter,omitempty" json:"jitter,omitempty" doc:"Variation around delay: the half-width for uniform, the standard deviation for normal. At most delay. Default 0."`
	Distribution  string   `yaml:"distribution,omitempty" json:"distribution,omitempty" enum:"uniform,normal" doc:"How jitter is distributed: uniform (default; delay±jitter) or normal (standard deviation jitter, never below 0). Needs jitter."`
	Correlation   float64  `yaml:"correlation,omitempty" json:"correlation,omitempty" doc:"Percent (0-100) by which each delay depends on the previous one, as netem's correlation. Needs jitter."`
	Mechanism     string   `yaml:"mechanism,omitempty" json:"mechanism,omitempty" enum:"auto,netem,proxy" doc:"auto (default): netem when the kernel has it, else the transparent proxy (TCP only). netem or proxy forces one; netem on a kernel without it is refused."`
}

// Proxy runs a TCP proxy from listen to upstream for the fault window and applies toxics to the
// connections through it, the way Toxiproxy is used in front of a dependency: clients are pointed
// at listen instead of the dependency.
type Proxy struct {
	Listen   string       `yaml:"listen" json:"listen" doc:"host:port the proxy listens on for the fault window, e.g. 127.0.0.1:15432."`
	Upstream string       `yaml:"upstream" json:"upstream" doc:"host:port the proxy connects each client to, e.g. 127.0.0.1:5432."`
	Toxics   []ProxyToxic `yaml:"toxics,omitempty" json:"toxics,omitempty" doc:"Applied in order to every connection (data passes latency before bandwidth if listed so). None means a plain proxy."`
}

// ProxyToxics adds toxics to a long-lived proxy served by `faultline proxy serve` for the fault
// window, the way Toxiproxy is driven in a docker-compose golden copy: the proxy stays in front of
// the dependency between experiments (and passes traffic untouched), and each experiment toggles
// toxics on it. The server holds the toxics on a lease that this run renews; if the run dies, the
// server removes them by itself once the lease runs out, and `faultline recover` removes them at once.
type ProxyToxics struct {
	Server    string       `yaml:"server" json:"server" doc:"The proxy server's API, e.g. http://toxiproxy.golden:8475 (http:// when no scheme is given)."`
	Proxy     string       `yaml:"proxy" json:"proxy" doc:"Name of the proxy on that server (as in its --proxy flag or config)."`
	TokenFile string       `yaml:"tokenFile,omitempty" json:"tokenFile,omitempty" doc:"File holding an admin bearer token for the server, when it requires one."`
	Lease     Duration     `yaml:"lease,omitempty" json:"lease,omitempty" doc:"How long the server keeps the toxics without hearing from this run; renewed every third of it. Default 15s, from 1s to 10m. After a crash the toxics are gone at most this long after the last renewal."`
	Toxics    []ProxyToxic `yaml:"toxics" json:"toxics" doc:"At least one; applied in order to every connection through the proxy, after toxics other runs may have set."`
}

// Lease bounds and default for ProxyToxics.
const (
	DefaultToxicLease = 15 * time.Second
	MinToxicLease     = time.Second
	MaxToxicLease     = 10 * time.Minute
)

func (p *ProxyToxics) validate(v *Validator, path string) {
	if strings.TrimSpace(p.Server) == "" {
		v.Errorf(path+".server", "is required: the API of a `faultline proxy serve`, e.g. http://127.0.0.1:8475")
	} else if _, err := ParseServerURL(p.Server); err != nil {
		v.Errorf(path+".server", "%v", err)
	}
	if p.Proxy == "" {
		v.Errorf(path+".proxy", "is required: the name of a proxy that server runs")
	} else if !nameRE.MatchString(p.Proxy) {
		v.Errorf(path+".proxy", "letters, digits, '.', '_' and '-' only, got %q", p.Proxy)
	}
	if p.Lease != 0 && (p.Lease.D() < MinToxicLease || p.Lease.D() > MaxToxicLease) {
		v.Errorf(path+".lease", "must be between %s and %s, got %s", MinToxicLease, MaxToxicLease, p.Lease)
	}
	if len(p.Toxics) == 0 {
		v.Errorf(path+".toxics", "at least one toxic is required: without one the fault would change nothing")
	}
	validateToxics(v, path, p.Toxics, "this fault")
}

// ParseServerURL reads the address of a faultline API: http(s)://HOST[:PORT], or HOST:PORT for
// http. A path, query or user info is refused: the routes are fixed.
func ParseServerURL(s string) (*url.URL, error) {
	raw := strings.TrimSpace(s)
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("%q is not a server address: want http(s)://HOST:PORT", s)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// ProxyToxic is one behaviour of a proxy. Exactly one kind is set.
type ProxyToxic struct {
	Name     string   `yaml:"name,omitempty" json:"name,omitempty" doc:"Optional; defaults to the kind and index."`
	Stream   string   `yaml:"stream,omitempty" json:"stream,omitempty" enum:"upstream,downstream,both" doc:"Which data it affects: upstream (client to upstream), downstream (upstream to client) or both. Default downstream for latency and bandwidth (as in Toxiproxy), both for blackhole and slowClose; reset acts on the whole connection."`
	Toxicity *float64 `yaml:"toxicity,omitempty" json:"toxicity,omitempty" doc:"Share of connections affected, 0 < toxicity <= 1. Default 1."`

	Latency   *ToxicLatency   `yaml:"latency,omitempty" json:"latency,omitempty" toxic:"latency"`
	Bandwidth *ToxicBandwidth `yaml:"bandwidth,omitempty" json:"bandwidth,omitempty" toxic:"bandwidth"`
	Reset     *ToxicReset     `yaml:"reset,omitempty" json:"reset,omitempty" toxic:"reset"`
	Blackhole *ToxicBlackhole `yaml:"blackhole,omitempty" json:"blackhole,omitempty" toxic:"blackhole"`
	SlowClose *ToxicSlowClose `yaml:"slowClose,omitempty" json:"slowClose,omitempty" toxic:"slow-close"`
}

// Kind returns the toxic's kind ("latency", "slow-close", ...), or "" when none is set.
func (t *ProxyToxic) Kind() string {
	m := setMembers(t, "toxic")
	if len(m) == 0 {
		return ""
	}
	return m[0].tag
}

// ToxicLatency holds every chunk of data for delay (± jitter). Order is preserved: a chunk never
// overtakes an earlier one.
type ToxicLatency struct {
	Delay        Duration `yaml:"delay" json:"delay" doc:"Delay added to each chunk of data, e.g. 100ms."`
	Jitter       Duration `yaml:"jitter,omitempty" json:"jitter,omitempty" doc:"Half-width (uniform) or standard deviation (normal) around delay. At most delay."`
	Distribution string   `yaml:"distribution,omitempty" json:"distribution,omitempty" enum:"uniform,normal" doc:"Default uniform. Needs jitter."`
	Correlation  float64  `yaml:"correlation,omitempty" json:"correlation,omitempty" doc:"Percent (0-100) by which each delay depends on the previous one. Needs jitter."`
}

// ToxicBandwidth limits the rate of the stream.
type ToxicBandwidth struct {
	Rate string `yaml:"rate" json:"rate" doc:"Per connection and stream: bits (100kbit, 10Mbit, 1Gbit) or bytes (500KB, 2MB, 1MiB) per second; an optional /s is accepted."`
}

// ToxicReset resets connections (TCP RST to both sides).
type ToxicReset struct {
	After Duration `yaml:"after,omitempty" json:"after,omitempty" doc:"Reset a connection this long after it opened or the toxic became active, whichever is later. Default 0: at once."`
}

// ToxicBlackhole accepts connections but holds their data: nothing is forwarded until the toxic
// is removed (then the held data flows on) or the connection is closed after timeout.
type ToxicBlackhole struct {
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty" doc:"Close the connection this long after the toxic became active for it. Default 0: hold until the fault is reverted."`
}

// ToxicSlowClose delays the propagation of a close (FIN) by delay.
type ToxicSlowClose struct {
	Delay Duration `yaml:"delay" json:"delay" doc:"How long a close is held back, e.g. 2s."`
}

func (l *Latency) validate(v *Validator, path string) {
	l.NetworkTarget.validate(v, path)
	l.validateParams(v, path)
}

// validateParams checks the delay and the mechanism (shared with podLatency).
func (l *Latency) validateParams(v *Validator, path string) {
	validateDelay(v, path, l.Delay, l.Jitter, l.Distribution, l.Correlation)
	switch l.Mechanism {
	case "", "auto", "netem":
	case "proxy":
		if l.Protocol == "udp" || l.Protocol == "icmp" {
			v.Errorf(path+".protocol", "mechanism proxy delays TCP only: use protocol tcp (or all), or mechanism netem for %s", l.Protocol)
		}
	default:
		v.Errorf(path+".mechanism", "must be auto, netem or proxy, got %q", l.Mechanism)
	}
}

func validateDelay(v *Validator, path string, delay, jitter Duration, dist string, corr float64) {
	if delay <= 0 {
		v.Errorf(path+".delay", "is required and must be positive, e.g. 50ms")
	}
	if jitter > delay && delay > 0 {
		v.Errorf(path+".jitter", "%s must not exceed delay (%s): a delay cannot be negative", jitter, delay)
	}
	switch dist {
	case "", "uniform", "normal":
		if dist != "" && jitter == 0 {
			v.Errorf(path+".distribution", "needs jitter: without it every delay is exactly %s", delay)
		}
	default:
		v.Errorf(path+".distribution", "must be uniform or normal, got %q", dist)
	}
	if corr < 0 || corr > 100 || math.IsNaN(corr) {
		v.Errorf(path+".correlation", "must be a percentage between 0 and 100, got %g", corr)
	} else if corr > 0 && jitter == 0 {
		v.Errorf(path+".correlation", "needs jitter: there is no variation to correlate")
	}
}

func (p *Proxy) validate(v *Validator, path string) {
	if p.Listen == "" {
		v.Errorf(path+".listen", "is required, e.g. 127.0.0.1:15432")
	} else if err := checkHostPort(p.Listen); err != nil {
		v.Errorf(path+".listen", "%v", err)
	}
	if p.Upstream == "" {
		v.Errorf(path+".upstream", "is required, e.g. 127.0.0.1:5432")
	} else if err := checkHostPort(p.Upstream); err != nil {
		v.Errorf(path+".upstream", "%v", err)
	}
	if p.Listen != "" && p.Listen == p.Upstream {
		v.Errorf(path+".upstream", "must differ from listen: the proxy would connect to itself")
	}
	validateToxics(v, path, p.Toxics, "this proxy")
}

// validateToxics checks a toxic list and names the unnamed ones (kind and index).
func validateToxics(v *Validator, path string, toxics []ProxyToxic, where string) {
	names := map[string]bool{}
	for i := range toxics {
		t := &toxics[i]
		tp := fmt.Sprintf("%s.toxics[%d]", path, i)
		validateUnion(v, tp, t, "toxic", "toxic")
		if t.Name == "" {
			t.Name = fmt.Sprintf("%s-%d", t.Kind(), i)
		} else if !nameRE.MatchString(t.Name) {
			v.Errorf(tp+".name", "letters, digits, '.', '_' and '-' only, got %q", t.Name)
		}
		if names[t.Name] {
			v.Errorf(tp+".name", "duplicate toxic name %q in %s", t.Name, where)
		}
		names[t.Name] = true
		switch t.Stream {
		case "", "upstream", "downstream", "both":
			if t.Stream != "" && t.Reset != nil {
				v.Errorf(tp+".stream", "reset acts on the whole connection: remove stream")
			}
		default:
			v.Errorf(tp+".stream", "must be upstream, downstream or both, got %q", t.Stream)
		}
		if t.Toxicity != nil && (*t.Toxicity <= 0 || *t.Toxicity > 1 || math.IsNaN(*t.Toxicity)) {
			v.Errorf(tp+".toxicity", "must be greater than 0 and at most 1 (the share of connections affected), got %g", *t.Toxicity)
		}
	}
}

func (t *ToxicLatency) validate(v *Validator, path string) {
	validateDelay(v, path, t.Delay, t.Jitter, t.Distribution, t.Correlation)
}

func (t *ToxicBandwidth) validate(v *Validator, path string) {
	if t.Rate == "" {
		v.Errorf(path+".rate", "is required, e.g. 10Mbit or 1MB")
	} else if _, err := ParseProxyRate(t.Rate); err != nil {
		v.Errorf(path+".rate", "%v", err)
	}
}

func (t *ToxicSlowClose) validate(v *Validator, path string) {
	if t.Delay <= 0 {
		v.Errorf(path+".delay", "is required and must be positive, e.g. 2s")
	}
}

// checkHostPort accepts host:port with a port between 1 and 65535.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:15432 or [::1]:15432)", s)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q: %q is not a host name or IP address", s, host)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("%q: port %q must be a number from 1 to 65535", s, port)
	}
	return nil
}

var rateRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)(/s)?$`)

// ParseProxyRate reads a rate such as 10Mbit, 100kbit, 2MB or 1MiB (per second) into bytes per
// second. Bit units end in "bit"; byte units are an upper-case B (KB = 1000 bytes, KiB = 1024).
func ParseProxyRate(s string) (float64, error) {
	m := rateRE.FindStringSubmatch(strings.TrimSpace(s))
	bad := fmt.Errorf("%q is not a rate: use bits (100kbit, 10Mbit, 1Gbit) or bytes (500KB, 2MB, 1MiB) per second", s)
	if m == nil {
		return 0, bad
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) {
		return 0, bad
	}
	units := map[string]float64{
		"bit": 1.0 / 8, "kbit": 1e3 / 8, "Kbit": 1e3 / 8, "mbit": 1e6 / 8, "Mbit": 1e6 / 8, "gbit": 1e9 / 8, "Gbit": 1e9 / 8,
		"B": 1, "KB": 1e3, "kB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
	}
	f, ok := units[m[2]]
	if !ok {
		return 0, bad
	}
	if r := n * f; r >= 1 {
		return r, nil
	}
	return 0, fmt.Errorf("%q is below 1 byte per second", s)
}

// ValidateToxics checks toxics that come from outside a runbook (the proxy server's API) and
// returns every problem at once, each with the path of its field (toxics[0].latency.delay).
func ValidateToxics(toxics []ProxyToxic) error {
	v := &Validator{}
	validateToxics(v, "", toxics, "this request")
	if len(v.problems) == 0 {
		return nil
	}
	msgs := make([]string, len(v.problems))
	for i, p := range v.problems {
		msgs[i] = strings.TrimPrefix(p.path, ".") + ": " + p.msg
	}
	return errors.New(strings.Join(msgs, "; "))
}
