package autoscaler

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// unhealthyAfter is how many passes in a row must fail before /healthz says
// so: one failed read of the API is not worth a restart.
const unhealthyAfter = 5

// Metrics exports what the loop sees and does to Prometheus, and its health
// to /healthz. A nil *Metrics records nothing.
type Metrics struct {
	reg         *prometheus.Registry
	pending     prometheus.Gauge
	unplaced    *prometheus.GaugeVec
	decisions   *prometheus.CounterVec
	errors      *prometheus.CounterVec
	poolSize    *prometheus.GaugeVec
	poolBackoff *prometheus.GaugeVec
	passSeconds prometheus.Histogram
	leader      prometheus.Gauge

	mu        sync.Mutex
	failures  int // passes failed in a row
	lastErr   error
	isLeader  bool
	lastPass  time.Time
	passCount int
}

// NewMetrics returns metrics on their own registry (plus Go and process
// collectors).
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{reg: reg}
	m.pending = prometheus.NewGauge(prometheus.GaugeOpts{Name: "provision_autoscaler_pending_tasks",
		Help: "Tasks or pods pending for lack of room, at the last pass."})
	m.unplaced = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "provision_autoscaler_unplaced_tasks",
		Help: "Pending tasks the last decision could not place, by why: waiting (a pool that fits cannot grow now) or unschedulable (no pool fits)."}, []string{"why"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "provision_autoscaler_decisions_total",
		Help: "Changes acted on, by action (scale_up, scale_down, resume) and result (ok, error)."}, []string{"action", "result"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "provision_autoscaler_errors_total",
		Help: "Failed passes and scale changes, by stage."}, []string{"stage"})
	m.poolSize = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "provision_autoscaler_pool_size",
		Help: "Machines of each autoscaled pool: current (in the cluster) and in_flight (being created)."}, []string{"pool", "state"})
	m.poolBackoff = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "provision_autoscaler_pool_backed_off",
		Help: "1 while a pool is skipped after a quota or capacity error."}, []string{"pool"})
	m.passSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "provision_autoscaler_loop_duration_seconds",
		Help:    "Time of one pass of the loop, decision and action included.",
		Buckets: []float64{.01, .05, .1, .5, 1, 5, 15, 30, 60, 120, 300, 600}})
	m.leader = prometheus.NewGauge(prometheus.GaugeOpts{Name: "provision_autoscaler_leader",
		Help: "1 if this replica leads and acts, 0 while it stands by."})
	for _, c := range []prometheus.Collector{m.pending, m.unplaced, m.decisions, m.errors, m.poolSize, m.poolBackoff, m.passSeconds, m.leader} {
		f(c)
	}
	return m
}

// SetLeader records whether this replica leads.
func (m *Metrics) SetLeader(lead bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.isLeader = lead
	m.mu.Unlock()
	v := 0.0
	if lead {
		v = 1
	}
	m.leader.Set(v)
}

func (m *Metrics) pass(d time.Duration, err error) {
	if m == nil {
		return
	}
	m.passSeconds.Observe(d.Seconds())
	m.mu.Lock()
	defer m.mu.Unlock()
	m.passCount++
	m.lastPass = time.Now()
	if err != nil {
		m.errors.WithLabelValues("pass").Inc()
		m.failures++
		m.lastErr = err
		return
	}
	m.failures, m.lastErr = 0, nil
}

func (m *Metrics) observe(v view, b *Backoff) {
	if m == nil {
		return
	}
	m.pending.Set(float64(len(v.demand.Pending)))
	for _, pl := range v.demand.Pools {
		m.poolSize.WithLabelValues(pl.Name, "current").Set(float64(pl.Current))
		m.poolSize.WithLabelValues(pl.Name, "in_flight").Set(float64(pl.InFlight))
		off := 0.0
		if b != nil {
			if _, ok := b.Status(pl.Name); ok {
				off = 1
			}
		}
		m.poolBackoff.WithLabelValues(pl.Name).Set(off)
	}
}

func (m *Metrics) decision(d Decision) {
	if m == nil {
		return
	}
	m.unplaced.WithLabelValues("waiting").Set(float64(countTasks(d.Waiting)))
	m.unplaced.WithLabelValues("unschedulable").Set(float64(countTasks(d.Unschedulable)))
}

func (m *Metrics) decided(action string, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
		m.errors.WithLabelValues(action).Inc()
	}
	m.decisions.WithLabelValues(action, result).Inc()
}

// Handler serves /metrics and /healthz. /healthz fails (503) only after
// several passes in a row failed, naming the last error; a standby replica
// is healthy.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		failures, lastErr, lead, passes := m.failures, m.lastErr, m.isLeader, m.passCount
		m.mu.Unlock()
		role := "standby"
		if lead {
			role = "leader"
		}
		if failures >= unhealthyAfter {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "unhealthy: %d passes failed in a row; last: %v\n", failures, lastErr)
			return
		}
		fmt.Fprintf(w, "ok: %s, %d passes\n", role, passes)
	})
	return mux
}
