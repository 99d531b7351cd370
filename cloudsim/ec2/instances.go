package ec2

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/provisionhq/provision/cloudsim"
)

// phase is where an instance is in its life; its state name follows from
// the phase, the time and whether a backing call is still in flight.
type phase int

const (
	phaseBoot      phase = iota // pending, then running
	phaseStop                   // stopping, then stopped
	phaseTerminate              // shutting-down, then terminated
)

type instance struct {
	id, region, reservationID, imageID, instanceType string
	arch, rootDevice, zone, subnetID, vpcID          string
	keyName, clientToken, spotRequestID              string
	groups                                           []string
	launchIndex                                      int
	tags                                             map[string]string
	privateIP, publicIP                              string
	wantPublicIP                                     bool
	seq                                              int64
	launchedAt, visibleAt                            time.Time
	phase                                            phase
	until                                            time.Time // when the phase's transition state ends
	busy                                             bool      // a backing call is in flight
	hostUp                                           bool      // the backing host exists
	reason                                           string    // stateTransitionReason
	stateReason                                      *xmlStateReason
}

func (in *instance) terminating() bool { return in.phase == phaseTerminate }

func (in *instance) terminated(now time.Time) bool {
	_, name := in.state(now)
	return name == "terminated"
}

// state is the instance's state code and name at now.
func (in *instance) state(now time.Time) (int, string) {
	settled := !in.busy && !now.Before(in.until)
	switch {
	case in.phase == phaseTerminate && settled:
		return 48, "terminated"
	case in.phase == phaseTerminate:
		return 32, "shutting-down"
	case in.phase == phaseStop && settled:
		return 80, "stopped"
	case in.phase == phaseStop:
		return 64, "stopping"
	case settled:
		return 16, "running"
	default:
		return 0, "pending"
	}
}

var instanceIDRE = idRE("i")

// launchReq is a RunInstances request checked for form; its references
// are resolved under the lock.
type launchReq struct {
	imageID, itype, token, fp string
	minCount, maxCount        int
	userData                  []byte
	tags                      map[string]string
	spot                      bool
	zone, subnetID, keyName   string
	groupIDs, groupNames      []string
	publicIP                  *bool // nil: the subnet's default
}

func parseLaunch(f url.Values) (*launchReq, *apiError) {
	l := &launchReq{imageID: f.Get("ImageId"), itype: cmp.Or(f.Get("InstanceType"), "m1.small"), token: f.Get("ClientToken")}
	switch {
	case l.imageID == "":
		return nil, errClient("MissingParameter", "The request must contain the parameter ImageId")
	case !amiRE.MatchString(l.imageID):
		return nil, errClient("InvalidAMIID.Malformed", "Invalid id: \"%s\" (expecting \"ami-...\")", l.imageID)
	case instanceTypes[l.itype] == "":
		return nil, errClient("InvalidParameterValue", "Invalid value '%s' for InstanceType.", l.itype)
	}
	var err1, err2 error
	l.minCount, err1 = strconv.Atoi(f.Get("MinCount"))
	l.maxCount, err2 = strconv.Atoi(f.Get("MaxCount"))
	if err1 != nil || err2 != nil || l.minCount < 1 || l.maxCount < l.minCount {
		return nil, errClient("InvalidParameterValue", "MinCount (%q) and MaxCount (%q) must be positive with MinCount <= MaxCount", f.Get("MinCount"), f.Get("MaxCount"))
	}
	var err error
	if l.userData, err = base64.StdEncoding.DecodeString(f.Get("UserData")); err != nil {
		return nil, errClient("InvalidParameterValue", "Invalid BASE64 encoding of user data.")
	}
	if len(l.userData) > maxUserData {
		return nil, errClient("InvalidParameterValue", "User data is limited to %d bytes", maxUserData)
	}
	if len(l.token) > 64 {
		return nil, errClient("InvalidParameterValue", "ClientToken must be at most 64 characters")
	}
	var aerr *apiError
	if l.tags, aerr = tagSpecs(f, "instance"); aerr != nil {
		return nil, aerr
	}
	switch mt := f.Get("InstanceMarketOptions.MarketType"); mt {
	case "":
	case "spot":
		l.spot = true
	default:
		return nil, errClient("InvalidParameterValue", "Value (%s) for parameter MarketType is invalid.", mt)
	}
	if aerr := l.parseNetwork(f); aerr != nil {
		return nil, aerr
	}
	l.keyName, l.zone = f.Get("KeyName"), f.Get("Placement.AvailabilityZone")
	l.fp = launchFingerprint(f)
	return l, nil
}

// parseNetwork reads the subnet, groups and public address, given either
// at instance level or in NetworkInterface.1 (not both, as EC2 insists).
func (l *launchReq) parseNetwork(f url.Values) *apiError {
	l.subnetID, l.groupIDs, l.groupNames = f.Get("SubnetId"), indexed(f, "SecurityGroupId"), indexed(f, "SecurityGroup")
	nics := indexedGroups(f, "NetworkInterface")
	if len(nics) == 0 {
		return nil
	}
	if l.subnetID != "" {
		return errClient("InvalidParameterCombination", "Network interfaces and an instance-level subnet ID may not be specified on the same request")
	}
	if len(l.groupIDs)+len(l.groupNames) > 0 {
		return errClient("InvalidParameterCombination", "Network interfaces and an instance-level security groups may not be specified on the same request")
	}
	if len(nics) > 1 {
		return errClient("InvalidParameterValue", "cloudsim models one network interface per instance (NetworkInterface.1)")
	}
	nic := nics[0]
	if di := nic.Get("DeviceIndex"); di != "" && di != "0" {
		return errClient("InvalidParameterValue", "Each network interface requires a device index; the primary one's is 0, not %s.", di)
	}
	l.subnetID, l.groupIDs = nic.Get("SubnetId"), indexed(nic, "SecurityGroupId")
	if v := nic.Get("AssociatePublicIpAddress"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errClient("InvalidParameterValue", "Value (%s) for parameter associatePublicIpAddress is invalid.", v)
		}
		l.publicIP = &b
	}
	return nil
}

// launchFingerprint covers every parameter of a launch but its token, so a
// reused token with anything changed is a mismatch, as on EC2.
func launchFingerprint(f url.Values) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(f)) {
		switch k {
		case "ClientToken", "Action", "Version", "DryRun":
			continue
		}
		parts = append(parts, k+"="+strings.Join(f[k], "\x00"))
	}
	return strings.Join(parts, "\x01")
}

// placement is what a launch's references resolve to.
type placement struct {
	image  image
	subnet *subnet
	groups []string
	key    *keyPair
}

// resolveLocked checks every reference of a launch as EC2 does, in its
// words; caller holds s.mu.
func (s *Server) resolveLocked(reg region, l *launchReq) (*placement, *apiError) {
	p := &placement{}
	var ok bool
	if p.image, ok = findImage(l.imageID); !ok {
		return nil, errClient("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", l.imageID)
	}
	if arch := instanceTypes[l.itype]; arch != p.image.arch {
		return nil, errClient("InvalidParameterValue", "The architecture '%s' of the specified instance type does not match the architecture '%s' of the specified AMI. Specify an instance type and an AMI that have matching architectures, and try again. You can use 'describe-instance-types' or 'describe-images' to discover the architecture of the instance type or AMI.", arch, p.image.arch)
	}
	if l.keyName != "" {
		if p.key, ok = s.keyLocked(reg, l.keyName); !ok {
			return nil, errClient("InvalidKeyPair.NotFound", "The key pair '%s' does not exist", l.keyName)
		}
	}
	if l.zone != "" && !slices.Contains(reg.zoneNames(), l.zone) {
		return nil, errClient("InvalidParameterValue", "Invalid availability zone: [%s]", l.zone)
	}
	switch {
	case l.subnetID != "":
		if !subnetIDRE.MatchString(l.subnetID) {
			return nil, errClient("InvalidSubnetID.Malformed", "Invalid id: \"%s\"", l.subnetID)
		}
		if p.subnet, ok = s.subnetLocked(reg, l.subnetID); !ok {
			return nil, errClient("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", l.subnetID)
		}
		if l.zone != "" && l.zone != p.subnet.zone {
			return nil, errClient("InvalidParameterValue", "Value (%s) for parameter availabilityZone is invalid. Subnet '%s' is in the availability zone %s", l.zone, p.subnet.id, p.subnet.zone)
		}
	default:
		// No subnet: the default subnet of the zone asked for, or of the
		// region's first zone.
		p.subnet, _ = s.defaultSubnetLocked(reg, cmp.Or(l.zone, reg.zoneNames()[0]))
	}
	for _, id := range l.groupIDs {
		if !groupIDRE.MatchString(id) {
			return nil, errClient("InvalidGroupId.Malformed", "Invalid id: \"%s\" (expecting \"sg-...\")", id)
		}
		g, ok := s.groups[id]
		if !ok || g.region != reg.name {
			return nil, errClient("InvalidGroup.NotFound", "The security group '%s' does not exist in VPC '%s'", id, p.subnet.vpcID)
		}
		if g.vpcID != p.subnet.vpcID {
			return nil, errClient("InvalidParameter", "Security group %s and subnet %s belong to different networks.", id, p.subnet.id)
		}
		p.groups = append(p.groups, id)
	}
	for _, name := range l.groupNames {
		g, err := s.groupByNameLocked(reg, name)
		if err != nil {
			return nil, err
		}
		p.groups = append(p.groups, g.id)
	}
	if len(p.groups) == 0 {
		def, _ := s.groupByNameLocked(reg, "default")
		p.groups = []string{def.id}
	}
	return p, nil
}

// capacityLocked applies the capacity and quota faults to a launch.
func (s *Server) capacityLocked(l *launchReq, zone string, f cloudsim.Faults) *apiError {
	if f.NoCapacity {
		return &apiError{status: http.StatusInternalServerError, code: "InsufficientInstanceCapacity",
			message: fmt.Sprintf("We currently do not have sufficient %s capacity in the Availability Zone you requested (%s). Our system will be working on provisioning additional capacity. You can currently get %s capacity by not specifying an Availability Zone in your request or choosing a different Availability Zone.", l.itype, zone, l.itype)}
	}
	if l.spot && f.SpotNoCapacity {
		return &apiError{status: http.StatusInternalServerError, code: "InsufficientInstanceCapacity",
			message: "There is no Spot capacity available that matches your request."}
	}
	if q := f.InstanceQuota; q > 0 {
		alive := 0
		for _, in := range s.instances {
			if !in.terminating() {
				alive++
			}
		}
		if alive+l.minCount > q {
			return errClient("InstanceLimitExceeded", "You have requested more instances (%d) than your current instance limit of %d allows for the specified instance type. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.", alive+l.minCount, q)
		}
	}
	return nil
}

// runInstances records the launch under the lock, starts the backing
// hosts with the lock released (a host takes seconds to start; other calls
// must not wait for it), then records their addresses. The answer always
// shows the instances pending, as EC2's does.
func (s *Server) runInstances(q *request) (response, *apiError) {
	l, err := parseLaunch(q.form)
	if err != nil {
		return nil, err
	}
	tokenKey := q.region.name + "/" + l.token
	s.mu.Lock()
	now := s.now()
	if l.token != "" {
		if prev, ok := s.tokens[tokenKey]; ok {
			defer s.mu.Unlock()
			if prev.fingerprint != l.fp {
				return nil, errClient("IdempotentParameterMismatch", "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
			}
			return &xmlRunInstancesResponse{xmlReservation: s.reservationLocked(prev.reservationID, prev.instanceIDs, now, false)}, nil
		}
	}
	p, err := s.resolveLocked(q.region, l)
	if err == nil {
		err = s.capacityLocked(l, p.subnet.zone, s.sim.Faults())
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	insts := s.recordLaunchLocked(q.region, l, p, now)
	ids := make([]string, len(insts))
	for i, in := range insts {
		ids[i] = in.id
	}
	if l.token != "" {
		s.tokens[tokenKey] = &launch{reservationID: insts[0].reservationID, fingerprint: l.fp, instanceIDs: ids}
	}
	s.mu.Unlock()

	if s.opts.Backing != nil {
		boot := cloudsim.Boot{UserData: l.userData, KeyUser: p.image.user}
		if p.key != nil {
			boot.PublicKeys = []string{p.key.publicKey}
		}
		// A launch EC2 accepted goes on when its caller hangs up (a killed
		// client, a reset connection): the hosts' start is not the request's.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(q.ctx), backingTimeout)
		err := s.startHosts(bctx, insts, boot, tokenKey)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &xmlRunInstancesResponse{xmlReservation: s.reservationLocked(insts[0].reservationID, ids, s.now(), true)}, nil
}

// recordLaunchLocked makes the launch's instances, pending.
func (s *Server) recordLaunchLocked(reg region, l *launchReq, p *placement, now time.Time) []*instance {
	faults := s.sim.Faults()
	resID := newID("r-")
	insts := make([]*instance, l.maxCount)
	for i := range insts {
		s.seq++
		in := &instance{
			id: newID("i-"), region: reg.name, reservationID: resID, imageID: l.imageID, instanceType: l.itype,
			arch: p.image.arch, rootDevice: p.image.rootDevice, zone: p.subnet.zone, subnetID: p.subnet.id, vpcID: p.subnet.vpcID,
			clientToken: l.token, groups: slices.Clone(p.groups), launchIndex: i, tags: clone(l.tags),
			privateIP: p.subnet.allocIPLocked(), wantPublicIP: p.subnet.mapPublicIP, seq: s.seq,
			launchedAt: now, visibleAt: now.Add(faults.InvisibleFor), phase: phaseBoot, until: now.Add(faults.PendingFor),
			busy: s.opts.Backing != nil,
		}
		if l.publicIP != nil {
			in.wantPublicIP = *l.publicIP
		}
		if p.key != nil {
			in.keyName = p.key.name
		}
		if l.spot {
			in.spotRequestID = "sir-" + newID("")[:8]
		}
		if in.wantPublicIP && s.opts.Backing == nil {
			in.publicIP = s.allocPublicIPLocked()
		}
		s.instances[in.id] = in
		insts[i] = in
	}
	return insts
}

// allocPublicIPLocked is a made-up public address for an instance with no
// backing host.
func (s *Server) allocPublicIPLocked() string {
	s.nextIP++
	n := s.nextIP
	return fmt.Sprintf("54.%d.%d.%d", 160+(n/62500)%32, (n/250)%250, n%250+1)
}

// startHosts starts the launch's backing hosts (the lock released) and
// records their addresses. If any fails, the launch fails: every host is
// removed and the instances are terminated with Server.InternalError.
func (s *Server) startHosts(ctx context.Context, insts []*instance, boot cloudsim.Boot, tokenKey string) *apiError {
	addrs := make([]string, len(insts))
	errs := make([]error, len(insts))
	var wg sync.WaitGroup
	slots := make(chan struct{}, backingParallelism)
	for i, in := range insts {
		b := boot
		b.LaunchIndex = in.launchIndex
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			addrs[i], errs[i] = s.opts.Backing.Start(ctx, in.id, b)
		}()
	}
	wg.Wait()
	failed := errors.Join(errs...)
	var remove []string
	s.mu.Lock()
	now := s.now()
	for i, in := range insts {
		in.busy = false
		if errs[i] == nil {
			in.hostUp = true
			in.privateIP = addrs[i]
			if in.wantPublicIP {
				in.publicIP = addrs[i]
			}
		}
		if failed != nil && !in.terminating() {
			in.phase, in.until = phaseTerminate, now
			in.stateReason = &xmlStateReason{Code: "Server.InternalError", Message: "Server.InternalError: Internal error on launch"}
		}
		if in.terminating() && in.hostUp {
			in.busy = true // removed below
			remove = append(remove, in.id)
		}
	}
	if failed != nil {
		delete(s.tokens, tokenKey) // a retry launches anew
	}
	s.mu.Unlock()
	s.removeHosts(ctx, remove)
	if failed != nil {
		return &apiError{status: http.StatusInternalServerError, code: "InternalError", message: "backing host: " + failed.Error()}
	}
	return nil
}

// removeHosts removes backing hosts (the lock released) and marks their
// instances' hosts gone.
func (s *Server) removeHosts(ctx context.Context, ids []string) {
	if len(ids) == 0 {
		return
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, backingParallelism)
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			if err := s.opts.Backing.Stop(ctx, id); err != nil {
				s.log.WarnContext(ctx, "remove backing host", "instance", id, "err", err)
			}
		}()
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if in, ok := s.instances[id]; ok {
			in.busy, in.hostUp = false, false
		}
	}
}

func (s *Server) reservationLocked(resID string, ids []string, now time.Time, fresh bool) xmlReservation {
	r := xmlReservation{ReservationID: resID, OwnerID: ownerID}
	for _, id := range ids {
		in, ok := s.instances[id]
		if !ok {
			continue
		}
		x := s.renderLocked(in, now)
		if fresh && !in.terminating() {
			x.State = xmlState{Code: 0, Name: "pending"}
		}
		r.Instances = append(r.Instances, x)
	}
	return r
}

// dnsNames are EC2's DNS names for a private and a public address.
func dnsNames(reg, private, public string) (string, string) {
	dash := func(ip string) string { return strings.ReplaceAll(ip, ".", "-") }
	var priv, pub string
	if reg == "us-east-1" {
		priv = "ip-" + dash(private) + ".ec2.internal"
		if public != "" {
			pub = "ec2-" + dash(public) + ".compute-1.amazonaws.com"
		}
	} else {
		priv = "ip-" + dash(private) + "." + reg + ".compute.internal"
		if public != "" {
			pub = "ec2-" + dash(public) + "." + reg + ".compute.amazonaws.com"
		}
	}
	return priv, pub
}

func (s *Server) renderLocked(in *instance, now time.Time) xmlInstance {
	code, name := in.state(now)
	x := xmlInstance{
		InstanceID: in.id, ImageID: in.imageID, State: xmlState{Code: code, Name: name}, Reason: in.reason,
		KeyName: in.keyName, AmiLaunchIndex: in.launchIndex, InstanceType: in.instanceType,
		LaunchTime: in.launchedAt.UTC().Format("2006-01-02T15:04:05.000Z"),
		Placement:  xmlPlacement{AvailabilityZone: in.zone, Tenancy: "default"}, Monitoring: xmlMonitoring{State: "disabled"},
		Architecture: in.arch, RootDeviceType: "ebs", RootDeviceName: in.rootDevice, VirtualizationType: "hvm", Hypervisor: "xen",
		ClientToken: in.clientToken, EnaSupport: true, PlatformDetails: "Linux/UNIX", StateReason: in.stateReason,
		InstanceLifecycle: map[bool]string{true: "spot"}[in.spotRequestID != ""], SpotInstanceRequestID: in.spotRequestID,
		Tags: xmlTags(in.tags),
	}
	for _, gid := range in.groups {
		gn := ""
		if g, ok := s.groups[gid]; ok {
			gn = g.name
		}
		x.Groups = append(x.Groups, xmlGroup{GroupID: gid, GroupName: gn})
	}
	if name == "terminated" {
		return x // its network interface is gone
	}
	x.SubnetID, x.VpcID, x.PrivateIP = in.subnetID, in.vpcID, in.privateIP
	public := in.publicIP
	if in.phase != phaseBoot {
		public = "" // released on stop and terminate
	}
	x.PublicIP = public
	x.PrivateDNSName, x.DNSName = dnsNames(in.region, in.privateIP, public)
	x.SourceDestCheck = true
	nic := xmlNetworkInterface{
		ID: stableID("eni-", in.id), SubnetID: in.subnetID, VpcID: in.vpcID, OwnerID: ownerID, Status: "in-use",
		MacAddress: "0e:" + in.id[2:4] + ":" + in.id[4:6] + ":" + in.id[6:8] + ":" + in.id[8:10] + ":" + in.id[10:12],
		PrivateIP:  in.privateIP, PrivateDNSName: x.PrivateDNSName, SourceDestCheck: true, Groups: x.Groups, InterfaceType: "interface",
		Attachment: xmlAttachment{ID: stableID("eni-attach-", in.id), DeviceIndex: 0, Status: "attached",
			AttachTime: x.LaunchTime, DeleteOnTermination: true},
	}
	if public != "" {
		nic.Association = &xmlAssociation{PublicIP: public, PublicDNSName: x.DNSName, IPOwnerID: "amazon"}
	}
	x.NetworkInterfaces = []xmlNetworkInterface{nic}
	return x
}

// instanceFields answers DescribeInstances filters for one instance.
func (s *Server) instanceFields(in *instance, now time.Time) fields {
	return func(name string) ([]string, bool) {
		one := func(v string) ([]string, bool) { return []string{v}, true }
		code, state := in.state(now)
		switch name {
		case "instance-state-name":
			return one(state)
		case "instance-state-code":
			return one(strconv.Itoa(code))
		case "instance-id":
			return one(in.id)
		case "reservation-id":
			return one(in.reservationID)
		case "client-token":
			return one(in.clientToken)
		case "instance-type":
			return one(in.instanceType)
		case "image-id":
			return one(in.imageID)
		case "key-name":
			return one(in.keyName)
		case "subnet-id":
			return one(in.subnetID)
		case "vpc-id":
			return one(in.vpcID)
		case "availability-zone":
			return one(in.zone)
		case "private-ip-address", "network-interface.addresses.private-ip-address":
			return one(in.privateIP)
		case "ip-address":
			return one(in.publicIP)
		case "architecture":
			return one(in.arch)
		case "launch-index":
			return one(strconv.Itoa(in.launchIndex))
		case "instance-lifecycle":
			return one(map[bool]string{true: "spot"}[in.spotRequestID != ""])
		case "spot-instance-request-id":
			return one(in.spotRequestID)
		case "instance.group-id", "group-id":
			return in.groups, true
		case "instance.group-name", "group-name":
			var names []string
			for _, id := range in.groups {
				if g, ok := s.groups[id]; ok {
					names = append(names, g.name)
				}
			}
			return names, true
		}
		return tagFields(in.tags, name)
	}
}

func (s *Server) describeInstances(q *request) (response, *apiError) {
	f := q.form
	ids := indexed(f, "InstanceId")
	maxResults := 0
	if v := f.Get("MaxResults"); v != "" {
		if len(ids) > 0 {
			return nil, errClient("InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 5 || n > 1000 {
			return nil, errClient("InvalidParameterValue", "Value ( %s ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.", v)
		}
		maxResults = n
	}
	after, aerr := parseCursor(f.Get("NextToken"))
	if aerr != nil {
		return nil, aerr
	}
	now := s.now()
	filters, aerr := parseFilters(f, s.instanceFields(&instance{}, now))
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeLocked(now)
	var match []*instance
	if len(ids) > 0 {
		for _, id := range ids {
			in, err := s.instanceLocked(q.region, id, now)
			if err != nil {
				return nil, err
			}
			match = append(match, in)
		}
	} else {
		for _, in := range s.instances {
			if in.region == q.region.name && !now.Before(in.visibleAt) && in.seq > after {
				match = append(match, in)
			}
		}
		slices.SortFunc(match, func(a, b *instance) int { return cmp.Compare(a.seq, b.seq) })
	}
	match = slices.DeleteFunc(match, func(in *instance) bool { return !matches(filters, s.instanceFields(in, now)) })
	resp := &xmlDescribeInstancesResponse{}
	if maxResults > 0 && len(match) > maxResults {
		match = match[:maxResults]
		resp.NextToken = cursor(match[len(match)-1].seq)
	}
	// Group consecutive instances of a reservation, as EC2 does.
	for _, in := range match {
		n := len(resp.Reservations)
		if n == 0 || resp.Reservations[n-1].ReservationID != in.reservationID {
			resp.Reservations = append(resp.Reservations, xmlReservation{ReservationID: in.reservationID, OwnerID: ownerID})
			n++
		}
		resp.Reservations[n-1].Instances = append(resp.Reservations[n-1].Instances, s.renderLocked(in, now))
	}
	return resp, nil
}

// cursor is the NextToken after the instance with sequence seq: the next
// page starts after it, so launches and terminations between pages
// neither skip nor repeat an instance.
func cursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("after:" + strconv.FormatInt(seq, 10)))
}

func parseCursor(tok string) (int64, *apiError) {
	if tok == "" {
		return 0, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil {
		if rest, ok := strings.CutPrefix(string(raw), "after:"); ok {
			if n, err := strconv.ParseInt(rest, 10, 64); err == nil && n >= 0 {
				return n, nil
			}
		}
	}
	return 0, errClient("InvalidParameterValue", "Invalid value '%s' for nextToken.", tok)
}

// instanceLocked finds a visible instance of the region by ID.
func (s *Server) instanceLocked(reg region, id string, now time.Time) (*instance, *apiError) {
	if !instanceIDRE.MatchString(id) {
		return nil, errClient("InvalidInstanceID.Malformed", "Invalid id: \"%s\"", id)
	}
	in, ok := s.instances[id]
	if !ok || in.region != reg.name || now.Before(in.visibleAt) {
		return nil, errClient("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
	}
	return in, nil
}

// targetsLocked resolves InstanceId.N, all or none.
func (s *Server) targetsLocked(q *request, now time.Time) ([]*instance, *apiError) {
	ids := indexed(q.form, "InstanceId")
	if len(ids) == 0 {
		return nil, errClient("MissingParameter", "The request must contain the parameter InstanceId")
	}
	var out []*instance
	for _, id := range ids {
		in, err := s.instanceLocked(q.region, id, now)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// purgeLocked forgets instances terminated long ago (their tokens stay).
func (s *Server) purgeLocked(now time.Time) {
	for id, in := range s.instances {
		if in.terminating() && now.Sub(in.until) > terminatedVisibleFor {
			delete(s.instances, id)
		}
	}
}

func userInitiated(now time.Time) string {
	return "User initiated (" + now.UTC().Format("2006-01-02 15:04:05 MST") + ")"
}

var userShutdown = &xmlStateReason{Code: "Client.UserInitiatedShutdown", Message: "Client.UserInitiatedShutdown: User initiated shutdown"}

func (s *Server) terminateInstances(q *request) (response, *apiError) {
	s.mu.Lock()
	now := s.now()
	targets, err := s.targetsLocked(q, now)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	resp := &xmlInstancesStateResponse{}
	var remove []string
	for _, in := range targets {
		code, name := in.state(now)
		if !in.terminating() {
			in.phase, in.until = phaseTerminate, now.Add(shuttingDownFor)
			in.reason, in.stateReason = userInitiated(now), userShutdown
			if in.hostUp && !in.busy {
				// A host still starting or powering is removed when that
				// call returns.
				in.busy = true
				remove = append(remove, in.id)
			}
		}
		c2, n2 := in.state(now)
		resp.Instances = append(resp.Instances, xmlStateChange{InstanceID: in.id, PreviousState: xmlState{code, name}, CurrentState: xmlState{c2, n2}})
	}
	s.mu.Unlock()
	s.removeHosts(q.ctx, remove)
	return resp, nil
}

// power is the backing's power switch, nil when instances have no hosts;
// an error when they have hosts that cannot be powered off.
func (s *Server) power() (cloudsim.Power, *apiError) {
	if s.opts.Backing == nil {
		return nil, nil
	}
	pw, ok := s.opts.Backing.(cloudsim.Power)
	if !ok {
		return nil, errClient("UnsupportedOperation", "This cloudsim's instance hosts cannot be powered off and on.")
	}
	return pw, nil
}

func (s *Server) stopInstances(q *request) (response, *apiError) {
	pw, err := s.power()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	now := s.now()
	targets, err := s.targetsLocked(q, now)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	for _, in := range targets {
		switch _, name := in.state(now); {
		case in.spotRequestID != "" && name != "stopped" && name != "stopping":
			s.mu.Unlock()
			return nil, errClient("UnsupportedOperation", "You can't stop the Spot Instance '%s' because it is associated with a one-time Spot Instance request. You can only stop Spot Instances associated with persistent Spot Instance requests.", in.id)
		case name == "pending" || in.terminating():
			s.mu.Unlock()
			return nil, errClient("IncorrectInstanceState", "This instance '%s' is not in a state from which it can be stopped.", in.id)
		}
	}
	resp := &xmlInstancesStateResponse{}
	var switched []string
	for _, in := range targets {
		code, name := in.state(now)
		if name == "running" {
			in.phase, in.until = phaseStop, now.Add(stoppingFor)
			in.reason, in.stateReason = userInitiated(now), userShutdown
			in.publicIP = "" // released on stop, as on EC2
			if pw != nil && in.hostUp {
				in.busy = true
				switched = append(switched, in.id)
			}
		}
		c2, n2 := in.state(now)
		resp.Instances = append(resp.Instances, xmlStateChange{InstanceID: in.id, PreviousState: xmlState{code, name}, CurrentState: xmlState{c2, n2}})
	}
	s.mu.Unlock()
	s.switchPower(q.ctx, pw, switched, false)
	return resp, nil
}

func (s *Server) startInstances(q *request) (response, *apiError) {
	pw, err := s.power()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	now := s.now()
	targets, err := s.targetsLocked(q, now)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	for _, in := range targets {
		if _, name := in.state(now); name == "stopping" || in.terminating() {
			s.mu.Unlock()
			return nil, errClient("IncorrectInstanceState", "The instance '%s' is not in a state from which it can be started.", in.id)
		}
	}
	resp := &xmlInstancesStateResponse{}
	var switched []string
	for _, in := range targets {
		code, name := in.state(now)
		if name == "stopped" {
			in.phase, in.until = phaseBoot, now.Add(s.sim.Faults().PendingFor)
			in.reason, in.stateReason = "", nil
			switch {
			case pw != nil && in.hostUp:
				in.busy = true
				switched = append(switched, in.id)
			case in.wantPublicIP:
				in.publicIP = s.allocPublicIPLocked() // a new one, as on EC2
			}
		}
		c2, n2 := in.state(now)
		resp.Instances = append(resp.Instances, xmlStateChange{InstanceID: in.id, PreviousState: xmlState{code, name}, CurrentState: xmlState{c2, n2}})
	}
	s.mu.Unlock()
	s.switchPower(q.ctx, pw, switched, true)
	return resp, nil
}

// switchPower powers hosts off or on after the answer has gone, as EC2
// stops and starts instances after StopInstances/StartInstances return;
// the instances stay stopping/pending until their host is done.
func (s *Server) switchPower(ctx context.Context, pw cloudsim.Power, ids []string, on bool) {
	if len(ids) == 0 {
		return
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), backingTimeout)
	go func() {
		defer cancel()
		var wg sync.WaitGroup
		slots := make(chan struct{}, backingParallelism)
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				slots <- struct{}{}
				defer func() { <-slots }()
				s.switchOne(bctx, pw, id, on)
			}()
		}
		wg.Wait()
	}()
}

func (s *Server) switchOne(ctx context.Context, pw cloudsim.Power, id string, on bool) {
	var (
		addr string
		err  error
	)
	if on {
		addr, err = pw.PowerOn(ctx, id)
	} else {
		err = pw.PowerOff(ctx, id)
	}
	s.mu.Lock()
	in, ok := s.instances[id]
	if !ok {
		s.mu.Unlock()
		return
	}
	in.busy = false
	now := s.now()
	switch {
	case in.terminating():
		in.busy = true
		s.mu.Unlock()
		s.removeHosts(ctx, []string{id})
		return
	case err != nil && on:
		s.log.ErrorContext(ctx, "power on backing host", "instance", id, "err", err)
		in.phase, in.until = phaseStop, now
		in.stateReason = &xmlStateReason{Code: "Server.InternalError", Message: "Server.InternalError: Internal error on start"}
	case err != nil:
		s.log.ErrorContext(ctx, "power off backing host", "instance", id, "err", err)
		in.phase, in.until, in.reason, in.stateReason = phaseBoot, now, "", nil
	case on:
		in.privateIP = addr
		if in.wantPublicIP {
			in.publicIP = addr
		}
	}
	s.mu.Unlock()
}

// rebootInstances accepts a reboot of running instances. The backing host
// is not restarted: a reboot keeps the instance's addresses and disk, and
// nothing outside the guest can tell it from no reboot.
func (s *Server) rebootInstances(q *request) (response, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	targets, err := s.targetsLocked(q, now)
	if err != nil {
		return nil, err
	}
	for _, in := range targets {
		if _, name := in.state(now); name != "running" && name != "pending" {
			return nil, errClient("IncorrectInstanceState", "The instance '%s' is not in a state from which it can be rebooted.", in.id)
		}
	}
	return &xmlReturnResponse{Return: true}, nil
}
