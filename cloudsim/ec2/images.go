package ec2

import (
	"slices"
	"strings"
)

var amiRE = idRE("ami")

// describeImages answers from the catalog (see images): by ID, where an
// unknown ID is an error, or by owner and filters.
func (s *Server) describeImages(q *request) (response, *apiError) {
	ids, owners := indexed(q.form, "ImageId"), indexed(q.form, "Owner")
	filters, err := parseFilters(q.form, imageFields(image{}))
	if err != nil {
		return nil, err
	}
	var picked []image
	var missing []string
	for _, id := range ids {
		if !amiRE.MatchString(id) {
			return nil, errClient("InvalidAMIID.Malformed", "Invalid id: \"%s\" (expecting \"ami-...\")", id)
		}
		im, ok := findImage(id)
		if !ok {
			missing = append(missing, id)
			continue
		}
		picked = append(picked, im)
	}
	if len(missing) > 0 {
		return nil, errClient("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", strings.Join(missing, ", "))
	}
	if len(ids) == 0 {
		picked = images
	}
	resp := &xmlDescribeImagesResponse{}
	for _, im := range picked {
		if len(owners) > 0 && !slices.ContainsFunc(owners, func(o string) bool { return o == im.owner || (o == im.alias && o != "") }) {
			continue // "self" and "aws-marketplace" own none of the catalog
		}
		if matches(filters, imageFields(im)) {
			resp.Images = append(resp.Images, renderImage(im))
		}
	}
	return resp, nil
}

func imageFields(im image) fields {
	return func(name string) ([]string, bool) {
		switch name {
		case "image-id":
			return []string{im.id}, true
		case "name":
			return []string{im.name}, true
		case "description":
			return []string{im.description}, true
		case "architecture":
			return []string{im.arch}, true
		case "owner-id":
			return []string{im.owner}, true
		case "owner-alias":
			return []string{im.alias}, true
		case "state":
			return []string{"available"}, true
		case "root-device-name", "block-device-mapping.device-name":
			return []string{im.rootDevice}, true
		case "root-device-type":
			return []string{"ebs"}, true
		case "virtualization-type":
			return []string{"hvm"}, true
		case "hypervisor":
			return []string{"xen"}, true
		case "is-public":
			return []string{"true"}, true
		case "image-type":
			return []string{"machine"}, true
		case "platform-details":
			return []string{"Linux/UNIX"}, true
		case "ena-support":
			return []string{"true"}, true
		}
		return tagFields(nil, name)
	}
}

func renderImage(im image) xmlImage {
	return xmlImage{
		ImageID: im.id, ImageLocation: im.owner + "/" + im.name, State: "available", OwnerID: im.owner, CreationDate: im.created,
		IsPublic: true, Architecture: im.arch, ImageType: "machine", Name: im.name, Description: im.description, OwnerAlias: im.alias,
		RootDeviceType: "ebs", RootDeviceName: im.rootDevice, VirtualizationType: "hvm", Hypervisor: "xen", EnaSupport: true,
		SriovNetSupport: "simple", PlatformDetails: "Linux/UNIX", UsageOperation: "RunInstances",
		BlockDevices: []xmlBlockDevice{{DeviceName: im.rootDevice, Ebs: &xmlEbs{SnapshotID: stableID("snap-", im.id), VolumeSize: 8,
			DeleteOnTermination: true, VolumeType: "gp3", Encrypted: false}}},
	}
}
