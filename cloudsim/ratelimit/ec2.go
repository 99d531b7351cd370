package ratelimit

import (
	"maps"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EC2's published API throttling, from AWS's "Request throttling for the
// Amazon EC2 API" (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html;
// the same table is at https://docs.aws.amazon.com/AWSEC2/latest/APIReference/throttling.html).
// Throttling is per account and per region; "each API is evaluated
// individually": every action has a request bucket of its own, sized by
// its category, and RunInstances, TerminateInstances, StartInstances and
// StopInstances also draw one token per instance from a resource bucket.
//
// Request token buckets (maximum capacity, refill per second):
//
//	Non-mutating actions (Describe*, List*, Search*, Get*)   100  20
//	Unfiltered and unpaginated non-mutating actions:          50  10
//	  DescribeInstances, DescribeInstanceStatus,
//	  DescribeNetworkInterfaces, DescribeSecurityGroups,
//	  DescribeSnapshots, DescribeSpotInstanceRequests,
//	  DescribeVolumes, when asked with neither a filter nor
//	  pagination
//	Mutating actions (all the others)                         50   5
//	Resource-intensive actions (AuthorizeSecurityGroupIngress, 50   5
//	  CreateKeyPair, RevokeSecurityGroupIngress, ...)
//	Uncategorized actions, each its own (those cloudsim speaks):
//	  RunInstances                                              5   2
//	  StartInstances                                            5   2
//	  TerminateInstances                                      100   5
//	  CreateTags, DeleteTags                                  100  10
//
// Resource token buckets (tokens are instances):
//
//	RunInstances        1000   2
//	TerminateInstances  1000  20
//	StartInstances      1000   2
//	StopInstances       1000  20
//
// Two readings of the page are this model's, not AWS's words: a call that
// lists instance IDs (InstanceId.N) but no Filter.N, MaxResults or
// NextToken is "unfiltered and unpaginated" (the page's "filter" links to
// the --filters documentation); and a refused call takes no token from
// either bucket.
var (
	EC2NonMutating           = Bucket{Capacity: 100, Refill: 20}
	EC2UnfilteredNonMutating = Bucket{Capacity: 50, Refill: 10}
	EC2Mutating              = Bucket{Capacity: 50, Refill: 5}
	EC2ResourceIntensive     = Bucket{Capacity: 50, Refill: 5}
)

// ec2Uncategorized are the uncategorized actions cloudsim's EC2 speaks.
var ec2Uncategorized = map[string]Bucket{
	"RunInstances":       {Capacity: 5, Refill: 2},
	"StartInstances":     {Capacity: 5, Refill: 2},
	"TerminateInstances": {Capacity: 100, Refill: 5},
	"CreateTags":         {Capacity: 100, Refill: 10},
	"DeleteTags":         {Capacity: 100, Refill: 10},
}

var ec2ResourceIntensive = map[string]bool{
	"AcceptVpcPeeringConnection": true, "AuthorizeSecurityGroupIngress": true, "CancelSpotInstanceRequests": true,
	"CreateKeyPair": true, "CreateVpcPeeringConnection": true, "DeleteVpcPeeringConnection": true,
	"RejectVpcPeeringConnection": true, "RevokeSecurityGroupIngress": true, "RequestSpotInstances": true,
}

var ec2UnfilteredSmall = map[string]bool{
	"DescribeInstances": true, "DescribeInstanceStatus": true, "DescribeNetworkInterfaces": true,
	"DescribeSecurityGroups": true, "DescribeSnapshots": true, "DescribeSpotInstanceRequests": true,
	"DescribeVolumes": true,
}

// EC2Resource are the resource token buckets, by action.
var EC2Resource = map[string]Bucket{
	"RunInstances":       {Capacity: 1000, Refill: 2},
	"TerminateInstances": {Capacity: 1000, Refill: 20},
	"StartInstances":     {Capacity: 1000, Refill: 2},
	"StopInstances":      {Capacity: 1000, Refill: 20},
}

// EC2 enforces EC2's published buckets for one account in one region. It
// is safe for concurrent use; the zero value is not usable (NewEC2).
type EC2 struct {
	now func() time.Time

	mu        sync.Mutex
	requests  map[string]*bucket // by bucket key (see requestBucket)
	resources map[string]*bucket // by action
	refused   map[string]int     // by action
}

// NewEC2 returns EC2's published limits with every bucket full.
func NewEC2() *EC2 {
	return &EC2{now: time.Now, requests: map[string]*bucket{}, resources: map[string]*bucket{}, refused: map[string]int{}}
}

// Allow reports whether a call of action with the Query API parameters
// form may go on now, and if so takes its tokens: one from the action's
// request bucket and, for an action with a resource bucket, one per
// instance it names (RunInstances' MaxCount, the others' InstanceId.N).
// A refused call (EC2 answers RequestLimitExceeded) takes nothing.
func (l *EC2) Allow(action string, form url.Values) bool {
	key, spec := requestBucket(action, form)
	res, hasRes := EC2Resource[action]
	n := 0.0
	if hasRes {
		n = float64(instancesOf(action, form))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	rb := l.requests[key]
	if rb == nil {
		rb = newBucket(spec, now)
		l.requests[key] = rb
	}
	var sb *bucket
	if hasRes {
		if sb = l.resources[action]; sb == nil {
			sb = newBucket(res, now)
			l.resources[action] = sb
		}
	}
	if rb.level(now) < 1 || (sb != nil && sb.level(now) < n) {
		l.refused[action]++
		return false
	}
	rb.tokens--
	if sb != nil {
		sb.tokens -= n
	}
	return true
}

// Refused returns how many calls of each action were refused.
func (l *EC2) Refused() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.refused)
}

// requestBucket names the request bucket a call draws from and its size.
func requestBucket(action string, form url.Values) (string, Bucket) {
	if b, ok := ec2Uncategorized[action]; ok {
		return action, b
	}
	if ec2ResourceIntensive[action] {
		return action, EC2ResourceIntensive
	}
	if !nonMutating(action) {
		return action, EC2Mutating
	}
	if ec2UnfilteredSmall[action] && !filteredOrPaginated(form) {
		return action + " (unfiltered)", EC2UnfilteredNonMutating
	}
	return action, EC2NonMutating
}

func nonMutating(action string) bool {
	for _, p := range []string{"Describe", "List", "Search", "Get"} {
		if strings.HasPrefix(action, p) {
			return true
		}
	}
	return false
}

func filteredOrPaginated(form url.Values) bool {
	if form.Has("MaxResults") || form.Has("NextToken") {
		return true
	}
	for k := range form {
		if strings.HasPrefix(k, "Filter.") {
			return true
		}
	}
	return false
}

// instancesOf is how many resource tokens a call needs: the instances it
// launches or acts on. A malformed count needs none (EC2 refuses the call
// as invalid).
func instancesOf(action string, form url.Values) int {
	if action == "RunInstances" {
		n, err := strconv.Atoi(form.Get("MaxCount"))
		if err != nil || n < 0 {
			return 0
		}
		return n
	}
	n := 0
	for k := range form {
		if strings.HasPrefix(k, "InstanceId.") {
			n++
		}
	}
	return n
}
