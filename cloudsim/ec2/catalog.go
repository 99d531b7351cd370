package ec2

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// The fixed catalog every account sees: regions with their zones,
// instance types and public images. Names and shapes are EC2's own, so a
// plan or a CLI call that works here names things that exist on AWS.

// region is one EC2 region as DescribeRegions and DescribeAvailabilityZones
// report it.
type region struct {
	name    string
	zones   []string // zone letters, e.g. "abc"
	zoneIDs string   // zone ID prefix, e.g. "use1"
}

var regions = []region{
	{"us-east-1", []string{"a", "b", "c", "d", "e", "f"}, "use1"},
	{"us-east-2", []string{"a", "b", "c"}, "use2"},
	{"us-west-1", []string{"a", "c"}, "usw1"},
	{"us-west-2", []string{"a", "b", "c", "d"}, "usw2"},
	{"ca-central-1", []string{"a", "b", "d"}, "cac1"},
	{"eu-west-1", []string{"a", "b", "c"}, "euw1"},
	{"eu-west-2", []string{"a", "b", "c"}, "euw2"},
	{"eu-west-3", []string{"a", "b", "c"}, "euw3"},
	{"eu-central-1", []string{"a", "b", "c"}, "euc1"},
	{"eu-north-1", []string{"a", "b", "c"}, "eun1"},
	{"ap-south-1", []string{"a", "b", "c"}, "aps1"},
	{"ap-northeast-1", []string{"a", "c", "d"}, "apne1"},
	{"ap-northeast-2", []string{"a", "b", "c", "d"}, "apne2"},
	{"ap-southeast-1", []string{"a", "b", "c"}, "apse1"},
	{"ap-southeast-2", []string{"a", "b", "c"}, "apse2"},
	{"sa-east-1", []string{"a", "b", "c"}, "sae1"},
}

func findRegion(name string) (region, bool) {
	i := slices.IndexFunc(regions, func(r region) bool { return r.name == name })
	if i < 0 {
		return region{}, false
	}
	return regions[i], true
}

// zoneNames are the region's availability zones, e.g. us-east-1a.
func (r region) zoneNames() []string {
	out := make([]string, len(r.zones))
	for i, z := range r.zones {
		out[i] = r.name + z
	}
	return out
}

// zoneID is the zone's account-independent ID, e.g. use1-az1.
func (r region) zoneID(zone string) string {
	return fmt.Sprintf("%s-az%d", r.zoneIDs, slices.Index(r.zoneNames(), zone)+1)
}

// instanceTypes maps each known instance type to its architecture. The
// families and sizes are EC2's; a name that is not here is refused as EC2
// refuses it.
var instanceTypes = func() map[string]string {
	out := map[string]string{}
	add := func(arch string, families []string, sizes ...string) {
		for _, f := range families {
			for _, s := range sizes {
				out[f+"."+s] = arch
			}
		}
	}
	const amd, arm = "x86_64", "arm64"
	burst := []string{"nano", "micro", "small", "medium", "large", "xlarge", "2xlarge"}
	add(amd, []string{"t2", "t3", "t3a"}, burst...)
	add(arm, []string{"t4g"}, burst...)
	add(amd, []string{"m1"}, "small", "medium", "large", "xlarge")
	add(amd, []string{"m5", "m5a", "r5", "r5a"}, "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge")
	add(amd, []string{"c5"}, "large", "xlarge", "2xlarge", "4xlarge", "9xlarge", "12xlarge", "18xlarge", "24xlarge")
	add(amd, []string{"m6i", "c6i", "r6i", "m6a", "c6a", "m7i", "c7i", "r7i"}, "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "32xlarge")
	add(arm, []string{"m6g", "c6g", "r6g", "m7g", "c7g", "r7g"}, "medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge")
	return out
}()

// image is one public AMI of the catalog.
type image struct {
	id, name, description, owner, alias string
	arch, rootDevice, created           string
	// user is the image's default login, the one an EC2 key pair is
	// installed for.
	user string
}

const (
	ownerDebian    = "136693071363"
	ownerCanonical = "099720109477"
	ownerAmazon    = "137112412989"
)

// images are the public AMIs every region offers. (On AWS an AMI ID is
// per region; one ID everywhere keeps plans portable between cloudsim's
// regions.) Root device names are the real ones: Debian and Amazon Linux
// boot from /dev/xvda, Ubuntu from /dev/sda1.
var images = []image{
	{id: "ami-0123456789abcdef0", name: "debian-12-amd64-20240717-1811", description: "Debian 12 (20240717-1811)", owner: ownerDebian,
		arch: "x86_64", rootDevice: "/dev/xvda", created: "2024-07-17T18:15:28.000Z", user: "admin"},
	{id: "ami-0d1e2b3c4a5f60718", name: "debian-12-amd64-20240201-1644", description: "Debian 12 (20240201-1644)", owner: ownerDebian,
		arch: "x86_64", rootDevice: "/dev/xvda", created: "2024-02-01T16:48:11.000Z", user: "admin"},
	{id: "ami-0f8e7d6c5b4a39281", name: "debian-12-arm64-20240717-1811", description: "Debian 12 (20240717-1811)", owner: ownerDebian,
		arch: "arm64", rootDevice: "/dev/xvda", created: "2024-07-17T18:16:02.000Z", user: "admin"},
	{id: "ami-0abcdef1234567890", name: "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240207.1",
		description: "Canonical, Ubuntu, 22.04 LTS, amd64 jammy image build on 2024-02-07", owner: ownerCanonical,
		arch: "x86_64", rootDevice: "/dev/sda1", created: "2024-02-07T09:12:31.000Z", user: "ubuntu"},
	{id: "ami-05b10e08d247fb927", name: "al2023-ami-2023.6.20241212.0-kernel-6.1-x86_64", description: "Amazon Linux 2023 AMI 2023.6.20241212.0 x86_64 HVM kernel-6.1",
		owner: ownerAmazon, alias: "amazon", arch: "x86_64", rootDevice: "/dev/xvda", created: "2024-12-12T20:07:11.000Z", user: "ec2-user"},
}

func findImage(id string) (image, bool) {
	i := slices.IndexFunc(images, func(im image) bool { return im.id == id })
	if i < 0 {
		return image{}, false
	}
	return images[i], true
}

// stableID is an ID derived from its parts, so the default VPC, subnets
// and groups of a region keep their IDs across restarts (and golden
// files can name them).
func stableID(prefix string, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "/")))
	return prefix + "0" + hex.EncodeToString(h[:])[:16]
}
