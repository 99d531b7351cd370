package gce

import (
	"cmp"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// refusal is why GCE refuses a create, in GCE's own words. Most refusals
// answer the call itself (an HTTP error); a few are accepted and fail in
// the operation (opCode set).
type refusal struct {
	status int
	reason string
	msg    string
	opCode string // the call succeeds and its operation fails with this code
}

func (r *refusal) write(w http.ResponseWriter) { writeError(w, r.status, r.reason, "", r.msg) }

// invalid is GCE's 400 for a field whose value it cannot use.
func invalid(field, value, why string) *refusal {
	return &refusal{status: http.StatusBadRequest, reason: "invalid",
		msg: fmt.Sprintf("Invalid value for field '%s': '%s'. %s", field, value, why)}
}

func required(field string) *refusal {
	return &refusal{status: http.StatusBadRequest, reason: "required",
		msg: fmt.Sprintf("Required field '%s' not specified", field)}
}

func notFound(resource string) *refusal {
	return &refusal{status: http.StatusNotFound, reason: "notFound",
		msg: fmt.Sprintf("The resource '%s' was not found", resource)}
}

// unknownZone is GCE's answer to any call naming a zone it does not have.
func unknownZone(zone string) *refusal { return invalid("zone", zone, "Unknown zone.") }

func unknownRegion(r string) *refusal { return invalid("region", r, "Unknown region.") }

// nameRegex is GCE's rule for resource names, quoted in its errors.
const nameRegex = `(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)`

var nameRE = regexp.MustCompile(`^` + nameRegex + `$`)

func checkName(field, name string) *refusal {
	if name == "" {
		return required(field)
	}
	if !nameRE.MatchString(name) {
		return invalid(field, name, "Must be a match of regex '"+nameRegex+"'")
	}
	return nil
}

// resolved is what a create's properties turned out to reference.
type resolved struct {
	machineType machineType
	image       image
	diskGB      int64
	networks    []string // per NIC: the network's URL path
	subnets     []string // per NIC: the subnetwork's URL path
	spot        bool     // SPOT or preemptible capacity
	scheduling  *computepb.Scheduling
}

// checkProps checks a create's instance properties the way GCE does: every
// reference must exist, in the form the call takes. bulk selects
// bulkInsert's rules: field names under resource.instanceProperties and a
// machine type given by name only.
func checkProps(project, zone string, p *computepb.InstanceProperties, bulk bool) (*resolved, *refusal) {
	prefix := "resource."
	if bulk {
		prefix = "resource.instanceProperties."
	}
	reg, _ := zoneRegion(zone) // the caller checked the zone
	res := &resolved{}
	var ref *refusal
	if res.machineType, ref = checkMachineType(project, zone, prefix, p.GetMachineType(), bulk); ref != nil {
		return nil, ref
	}
	if res.image, res.diskGB, ref = checkBootDisk(project, zone, prefix, p.GetDisks()); ref != nil {
		return nil, ref
	}
	if res.networks, res.subnets, ref = checkNICs(project, reg, prefix, p.GetNetworkInterfaces()); ref != nil {
		return nil, ref
	}
	if res.scheduling, res.spot, ref = checkScheduling(prefix, p.GetScheduling()); ref != nil {
		return nil, ref
	}
	return res, nil
}

// checkMachineType: instances.insert takes a zonal URL (full or partial);
// bulkInsert's instanceProperties take a bare name, and GCE documents that
// a URL there ends in an INTERNAL_ERROR.
func checkMachineType(project, zone, prefix, v string, bulk bool) (machineType, *refusal) {
	field := prefix + "machineType"
	if v == "" {
		return machineType{}, required(field)
	}
	name, mtZone := v, zone
	if bulk {
		if strings.Contains(v, "/") {
			return machineType{}, &refusal{opCode: "INTERNAL_ERROR", status: http.StatusInternalServerError,
				msg: "Internal error. Please try again or contact Google Support. (Code: '-6143424562427934123')"}
		}
	} else {
		var ok bool
		if _, mtZone, name, ok = zonalRef(v, project, "machineTypes"); !ok {
			return machineType{}, invalid(field, v, "The URL is malformed.")
		}
	}
	mt, ok := findMachineType(name)
	if !ok || mtZone != zone {
		return machineType{}, invalid(field, v, fmt.Sprintf("Machine type with name '%s' does not exist in zone '%s'.", name, zone))
	}
	return mt, nil
}

// checkBootDisk: the first disk boots, created from a catalog image.
func checkBootDisk(project, zone, prefix string, disks []*computepb.AttachedDisk) (image, int64, *refusal) {
	if len(disks) == 0 {
		return image{}, 0, invalid(prefix+"disks", "", "No disks are specified.")
	}
	d := disks[0]
	if !d.GetBoot() {
		return image{}, 0, invalid(prefix+"disks[0].boot", "false", "Boot disk must be the first disk attached to the instance.")
	}
	if src := d.GetSource(); src != "" {
		// cloudsim has no disks resource: every existing disk is missing.
		p, z, n, ok := zonalRef(src, project, "disks")
		if !ok {
			return image{}, 0, invalid(prefix+"disks[0].source", src, "The URL is malformed.")
		}
		return image{}, 0, notFound(fmt.Sprintf("projects/%s/zones/%s/disks/%s", p, z, n))
	}
	field := prefix + "disks[0].initializeParams.sourceImage"
	v := d.GetInitializeParams().GetSourceImage()
	if v == "" {
		return image{}, 0, invalid(prefix+"disks[0]", "", "Source image must be specified.")
	}
	p, name, family, ok := imageRef(v, project)
	if !ok {
		return image{}, 0, invalid(field, v, "The URL is malformed.")
	}
	var im image
	if family {
		if im, ok = familyImage(p, name); !ok {
			return image{}, 0, notFound(fmt.Sprintf("projects/%s/global/images/family/%s", p, name))
		}
	} else if im, ok = findImage(p, name); !ok {
		return image{}, 0, notFound(fmt.Sprintf("projects/%s/global/images/%s", p, name))
	}
	size := d.GetInitializeParams().GetDiskSizeGb()
	if size == 0 {
		size = im.diskGB
	}
	if size < im.diskGB {
		return image{}, 0, invalid(prefix+"disks[0].initializeParams.diskSizeGb", fmt.Sprint(size),
			fmt.Sprintf("Requested disk size cannot be smaller than the image size (%d GB)", im.diskGB))
	}
	return im, size, nil
}

// checkNICs: each interface is on the project's default network, through
// the default subnetwork of the instance's region; an interface naming
// neither gets the default network, as on GCE.
func checkNICs(project string, reg region, prefix string, nics []*computepb.NetworkInterface) (networks, subnets []string, _ *refusal) {
	if len(nics) == 0 {
		return nil, nil, invalid(prefix+"networkInterfaces", "", "At least one network interface is required.")
	}
	for i, nic := range nics {
		field := fmt.Sprintf("%snetworkInterfaces[%d]", prefix, i)
		if v := nic.GetNetwork(); v != "" {
			p, name, ok := globalRef(v, project, "networks")
			if !ok {
				return nil, nil, invalid(field+".network", v, "The URL is malformed.")
			}
			if p != project || name != defaultNetwork {
				return nil, nil, invalid(field+".network", v, "The referenced network resource cannot be found.")
			}
		}
		if v := nic.GetSubnetwork(); v != "" {
			p, r, name, ok := regionalRef(v, project, "subnetworks")
			if !ok {
				return nil, nil, invalid(field+".subnetwork", v, "The URL is malformed.")
			}
			if p != project || r != reg.name || name != defaultNetwork {
				return nil, nil, invalid(field+".subnetwork", v, "The referenced subnetwork resource cannot be found.")
			}
		}
		for j, ac := range nic.GetAccessConfigs() {
			if t := ac.GetType(); t != "" && t != "ONE_TO_ONE_NAT" {
				return nil, nil, invalid(fmt.Sprintf("%s.accessConfigs[%d].type", field, j), t, "Must be ONE_TO_ONE_NAT.")
			}
		}
		networks = append(networks, fmt.Sprintf("projects/%s/global/networks/%s", project, defaultNetwork))
		subnets = append(subnets, fmt.Sprintf("projects/%s/regions/%s/subnetworks/%s", project, reg.name, defaultNetwork))
	}
	return networks, subnets, nil
}

// checkScheduling validates the provisioning model and returns the
// scheduling GCE reports back for it: Spot and preemptible VMs cannot
// live-migrate or restart, and a Spot VM stops when reclaimed unless told
// to delete.
func checkScheduling(prefix string, s *computepb.Scheduling) (*computepb.Scheduling, bool, *refusal) {
	field := prefix + "scheduling."
	model := s.GetProvisioningModel()
	switch model {
	case "", "STANDARD", "SPOT":
	default:
		return nil, false, invalid(field+"provisioningModel", model, "Must be one of [SPOT, STANDARD].")
	}
	action := s.GetInstanceTerminationAction()
	switch action {
	case "", "STOP", "DELETE":
	default:
		return nil, false, invalid(field+"instanceTerminationAction", action, "Must be one of [DELETE, STOP].")
	}
	spot := model == "SPOT" || s.GetPreemptible()
	if !spot {
		if action != "" {
			return nil, false, invalid(field+"instanceTerminationAction", action, "Instance termination action can only be set for Spot or preemptible VMs.")
		}
		out := &computepb.Scheduling{
			ProvisioningModel: proto.String("STANDARD"), Preemptible: proto.Bool(false),
			AutomaticRestart:  proto.Bool(s == nil || s.AutomaticRestart == nil || s.GetAutomaticRestart()),
			OnHostMaintenance: proto.String(cmp.Or(s.GetOnHostMaintenance(), "MIGRATE")),
		}
		return out, false, nil
	}
	if s.GetOnHostMaintenance() == "MIGRATE" {
		return nil, false, invalid(field+"preemptible", "true", "Scheduling must have preemptible be false when OnHostMaintenance isn't TERMINATE.")
	}
	if s.GetAutomaticRestart() {
		return nil, false, invalid(field+"automaticRestart", "true", "Preemptible instances cannot be automatically restarted.")
	}
	out := &computepb.Scheduling{
		Preemptible: proto.Bool(true), AutomaticRestart: proto.Bool(false),
		OnHostMaintenance: proto.String("TERMINATE"),
	}
	if model == "SPOT" {
		out.ProvisioningModel = proto.String("SPOT")
		out.InstanceTerminationAction = proto.String(cmp.Or(action, "STOP"))
	}
	return out, true, nil
}

// loginKeys reads the ssh-keys metadata (lines "user:ssh-ed25519 AAAA...
// comment") and returns the first user with that user's keys: what the
// guest agent installs on a GCE image.
func loginKeys(md *computepb.Metadata) (user string, keys []string) {
	for _, it := range md.GetItems() {
		if it.GetKey() != "ssh-keys" && it.GetKey() != "sshKeys" {
			continue
		}
		for _, line := range strings.Split(it.GetValue(), "\n") {
			u, key, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok || u == "" || key == "" || (user != "" && u != user) {
				continue
			}
			user = u
			keys = append(keys, key)
		}
	}
	return user, keys
}
