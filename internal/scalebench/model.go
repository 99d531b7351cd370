// Package scalebench measures how provision's time to bring up N machines
// grows with N, against a fast, honest model of what is slow: cloudsim's
// EC2 with EC2's published API rate limits in force (cloudsim/ratelimit),
// instances that go pending → running, and hosts whose boot, SSH, runtime
// install and cluster join take the times in a Model. What runs for real
// is the code under test: the apply engine (plans/apply), the aws provider
// (providers/aws, with its batching and retries), aws-sdk-go-v2 and
// cloudsim's EC2, speaking the EC2 Query API to each other in process.
//
// Time is virtual: a run happens inside a testing/synctest bubble, whose
// clock jumps ahead whenever every goroutine in it waits, so a run that
// takes two model hours takes a second or two of CPU, and every duration
// in the code under test (the provider's poll interval, the SDK's
// backoff, the engine's retries) keeps its real length. The cost of that:
// CPU time is free in the model (a run's own computation takes no model
// time), which is why the report gives wall time beside it. Run therefore
// must be called inside a bubble (synctest.Test); see the package's tests
// and `make bench`.
//
// Beside provision's way it models the peers' (Strategy PerMachine): one
// create call per machine and a fixed parallelism of 10, as Terraform's
// aws_instance (RunInstances with count 1, then a DescribeInstances wait
// of 10 s then every 3, 6, 10 s, then its provisioners, all inside one of
// its 10 slots) and docker-machine and Cluster API's cloud providers (one
// machine, one call) do; against the same cloud and hosts.
package scalebench

import "time"

// Model is how long the slow parts take, in model time.
type Model struct {
	// APILatency is added to every EC2 API request.
	APILatency time.Duration
	// PendingFor is how long an instance stays pending before running.
	PendingFor time.Duration
	// InvisibleFor is how long a new instance ID is unknown to
	// DescribeInstances (EC2's eventual consistency).
	InvisibleFor time.Duration
	// Boot is from running to the host answering SSH (cloud-init).
	Boot time.Duration
	// Handshake is one SSH connection's setup once the host answers.
	Handshake time.Duration
	// Runtime is installing and starting the container runtime.
	Runtime time.Duration
	// Init is the first manager's swarm init.
	Init time.Duration
	// Join is one worker's join, of which JoinSerial is the manager's
	// share, done for one joining node at a time.
	Join, JoinSerial time.Duration
}

// DefaultModel is an EC2 instance from a stock Debian image: it runs 20 s
// after its launch and answers SSH 15 s later, a runtime install from the
// distribution's packages takes a minute, and a Swarm join takes 5 s.
// These are round figures of the kind one sees on EC2, not measurements.
// JoinSerial is an assumption too, a pessimistic one: a join costs the
// manager a Raft commit (the node's record and its certificate) with its
// WAL fsync, about 10 ms, and the model lets one join's commit wait for
// the last, where swarmkit's Raft loop would batch concurrent proposals
// into one fsync.
var DefaultModel = Model{
	APILatency:   200 * time.Millisecond,
	PendingFor:   20 * time.Second,
	InvisibleFor: time.Second,
	Boot:         15 * time.Second,
	Handshake:    300 * time.Millisecond,
	Runtime:      60 * time.Second,
	Init:         5 * time.Second,
	Join:         5 * time.Second,
	JoinSerial:   10 * time.Millisecond,
}
