// Package cloudsim owns what the cloud emulators share: fault injection,
// per-action call counters and the optional backing of instances by real
// local hosts. The emulators themselves (ec2/, gce/, openstack/) speak each
// cloud's real wire protocol so the official SDK clients run unchanged
// against them with only an endpoint override.
package cloudsim

import (
	"context"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// Faults is what makes a cloud hard. The zero value is a perfect cloud.
type Faults struct {
	// ThrottleRate is the fraction (0..1) of API calls refused as throttled.
	ThrottleRate float64
	// PendingFor is how long a new instance stays pending before running.
	PendingFor time.Duration
	// InvisibleFor is how long a new instance ID is unknown to reads
	// (describe/get/list) after its create call returned: eventual consistency.
	InvisibleFor time.Duration
	// InstanceQuota caps the instances alive at once (0 = unlimited); a
	// create that would pass it fails with the cloud's quota error.
	InstanceQuota int
	// NoCapacity makes every create fail with the cloud's capacity error.
	NoCapacity bool
	// SpotNoCapacity makes only spot/preemptible creates fail with the
	// cloud's capacity error (EC2 InsufficientInstanceCapacity, GCE
	// ZONE_RESOURCE_POOL_EXHAUSTED): on-demand creates still succeed, as
	// when a cloud reclaims its spare capacity.
	SpotNoCapacity bool

	// Request faults (see Sim.Serve): they strike any API request, before
	// the emulator knows which action it is.

	// ServerErrorRate is the fraction (0..1) of API requests answered with
	// a server error, 500 or 503 in the cloud's own error shape.
	ServerErrorRate float64
	// ResetRate is the fraction (0..1) of API requests whose connection is
	// reset (TCP RST) with no response at all.
	ResetRate float64
	// AfterWork is the share (0..1) of server errors and resets that
	// strike after the request did its work: the call took effect and
	// only its answer is lost, as when a cloud's front end times out on a
	// back end that finished. The rest strike before the work: nothing
	// happened. Zero means every fault strikes before the work. A client
	// that retries a mutating call must do so idempotently (EC2
	// ClientToken, GCE requestId, a Nova lookup by name) to survive the
	// after-work share without duplicates.
	AfterWork float64
	// Latency is added to every API request before it is served.
	Latency time.Duration
}

// Sim holds the faults and counters of one emulator; safe for concurrent use.
type Sim struct {
	mu       sync.Mutex
	faults   Faults
	calls    map[string]int
	refused  int // calls refused as throttled
	injected FaultCounts
	rng      *rand.Rand
}

// NewSim returns a Sim with the given faults. seed makes throttling and
// request faults reproducible in tests: the Nth decision drawn from a Sim
// is the same for the same seed and faults, so a client that makes its
// calls one at a time meets the same faults on every run (concurrent
// calls meet the same faults in the order they reach the Sim).
func NewSim(f Faults, seed uint64) *Sim {
	return &Sim{faults: f, calls: map[string]int{}, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// SetFaults replaces the faults (tests change them between steps).
func (s *Sim) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// Faults returns the current faults.
func (s *Sim) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// Call counts one API call by action and reports whether it must be
// refused as throttled.
func (s *Sim) Call(action string) (throttled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[action]++
	if s.faults.ThrottleRate > 0 && s.rng.Float64() < s.faults.ThrottleRate {
		s.refused++
		return true
	}
	return false
}

// Throttled returns how many calls Call refused as throttled so far (an
// emulator that never throttles an action, as cloudsim's Keystone, counts
// its refusals here too but serves them).
func (s *Sim) Throttled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// Calls returns how many times action was called (throttled calls included).
func (s *Sim) Calls(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[action]
}

// CallCounts returns a copy of every counter, for /_sim/calls and tests.
func (s *Sim) CallCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// Actions lists the actions called so far, sorted.
func (s *Sim) Actions() []string {
	counts := s.CallCounts()
	out := make([]string, 0, len(counts))
	for k := range counts {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Inventory is what instances an emulator holds, for tests that check a
// client for duplicates and leaks (GET /_sim/instances).
type Inventory struct {
	// Alive are the IDs of the instances not being deleted, visible to
	// reads yet or not, sorted.
	Alive []string `json:"alive"`
	// Launched counts the instances created, deleted ones included (until
	// the cloud forgets them, as EC2 does an hour after termination): a
	// duplicate that was made and then deleted still shows here.
	Launched int `json:"launched"`
}

// Backing makes emulated instances real: each one is a local host that
// answers SSH with the host key from its user-data. Emulators call Start when
// an instance is created and Stop when it is terminated; a nil Backing
// leaves instances as records only (with made-up addresses).
type Backing interface {
	// Start creates the host for instance id and returns its address. The
	// host configures itself from boot as cloud-init on a VM would.
	Start(ctx context.Context, id string, boot Boot) (address string, err error)
	Stop(ctx context.Context, id string) error
}

// Boot is what an instance's guest reads from its cloud's metadata service
// at first boot: the user-data exactly as the create call carried it
// (transport base64 undone, nothing else), and its launch index.
type Boot struct {
	UserData []byte
	// LaunchIndex is the instance's index in its launch request (EC2
	// ami-launch-index, Nova launch_index); userdata.NoLaunchIndex (-1)
	// when the cloud has none (GCE).
	LaunchIndex int
	// PublicKeys are login keys the cloud itself installs, outside
	// user-data: an EC2 or Nova key pair, GCE ssh-keys metadata. The guest
	// authorizes them for KeyUser, as cloud-init's default user would be.
	PublicKeys []string
	// KeyUser is the login that PublicKeys are for; empty means the
	// image's default user (DefaultUser).
	KeyUser string
}

// DefaultUser is the default login of the images cloudsim offers, as
// Debian's cloud images name it on EC2.
const DefaultUser = "admin"

// Power is what a Backing offers when its hosts can be stopped and started
// again with their disks (EC2 StopInstances/StartInstances, Nova
// os-stop/os-start, GCE stop/start). Emulators check for it with a type
// assertion and refuse the action when the backing cannot do it.
type Power interface {
	PowerOff(ctx context.Context, id string) error
	// PowerOn starts a stopped host again and returns its address, which
	// may differ from the one it had before, as a cloud's public address
	// does.
	PowerOn(ctx context.Context, id string) (address string, err error)
}
