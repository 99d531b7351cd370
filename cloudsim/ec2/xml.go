package ec2

import (
	"encoding/xml"
	"maps"
	"slices"
)

// The EC2 Query API's XML documents, as far as the emulated actions need.
// Element names are the wire names (locationName) of EC2's service model,
// which aws-sdk-go-v2 and botocore read. A response's root element is
// named by ServeHTTP (<Action>Response).

const xmlns = "http://ec2.amazonaws.com/doc/2016-11-15/"

type xmlErrorResponse struct {
	XMLName   xml.Name   `xml:"Response"`
	Errors    []xmlError `xml:"Errors>Error"`
	RequestID string     `xml:"RequestID"`
}

type xmlError struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func xmlTags(m map[string]string) []xmlTag {
	var out []xmlTag
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, xmlTag{Key: k, Value: m[k]})
	}
	return out
}

type xmlReturnResponse struct {
	meta
	Return bool `xml:"return"`
}

// Instances.

type xmlState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type xmlGroup struct {
	GroupID   string `xml:"groupId"`
	GroupName string `xml:"groupName,omitempty"`
}

type xmlStateReason struct {
	Code    string `xml:"code"`
	Message string `xml:"message"`
}

type xmlPlacement struct {
	AvailabilityZone string `xml:"availabilityZone"`
	GroupName        string `xml:"groupName"`
	Tenancy          string `xml:"tenancy"`
}

type xmlMonitoring struct {
	State string `xml:"state"`
}

type xmlAttachment struct {
	ID                  string `xml:"attachmentId"`
	DeviceIndex         int    `xml:"deviceIndex"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xmlAssociation struct {
	PublicIP      string `xml:"publicIp"`
	PublicDNSName string `xml:"publicDnsName"`
	IPOwnerID     string `xml:"ipOwnerId"`
}

type xmlNetworkInterface struct {
	ID              string          `xml:"networkInterfaceId"`
	SubnetID        string          `xml:"subnetId"`
	VpcID           string          `xml:"vpcId"`
	OwnerID         string          `xml:"ownerId"`
	Status          string          `xml:"status"`
	MacAddress      string          `xml:"macAddress"`
	PrivateIP       string          `xml:"privateIpAddress"`
	PrivateDNSName  string          `xml:"privateDnsName"`
	SourceDestCheck bool            `xml:"sourceDestCheck"`
	Groups          []xmlGroup      `xml:"groupSet>item"`
	Attachment      xmlAttachment   `xml:"attachment"`
	Association     *xmlAssociation `xml:"association,omitempty"`
	InterfaceType   string          `xml:"interfaceType"`
}

type xmlInstance struct {
	InstanceID            string                `xml:"instanceId"`
	ImageID               string                `xml:"imageId"`
	State                 xmlState              `xml:"instanceState"`
	PrivateDNSName        string                `xml:"privateDnsName"`
	DNSName               string                `xml:"dnsName"`
	Reason                string                `xml:"reason"`
	KeyName               string                `xml:"keyName,omitempty"`
	AmiLaunchIndex        int                   `xml:"amiLaunchIndex"`
	InstanceType          string                `xml:"instanceType"`
	LaunchTime            string                `xml:"launchTime"`
	Placement             xmlPlacement          `xml:"placement"`
	Monitoring            xmlMonitoring         `xml:"monitoring"`
	SubnetID              string                `xml:"subnetId,omitempty"`
	VpcID                 string                `xml:"vpcId,omitempty"`
	PrivateIP             string                `xml:"privateIpAddress,omitempty"`
	PublicIP              string                `xml:"ipAddress,omitempty"`
	SourceDestCheck       bool                  `xml:"sourceDestCheck,omitempty"`
	Groups                []xmlGroup            `xml:"groupSet>item"`
	StateReason           *xmlStateReason       `xml:"stateReason,omitempty"`
	Architecture          string                `xml:"architecture"`
	RootDeviceType        string                `xml:"rootDeviceType"`
	RootDeviceName        string                `xml:"rootDeviceName"`
	InstanceLifecycle     string                `xml:"instanceLifecycle,omitempty"`
	SpotInstanceRequestID string                `xml:"spotInstanceRequestId,omitempty"`
	VirtualizationType    string                `xml:"virtualizationType"`
	ClientToken           string                `xml:"clientToken,omitempty"`
	Tags                  []xmlTag              `xml:"tagSet>item"`
	Hypervisor            string                `xml:"hypervisor"`
	NetworkInterfaces     []xmlNetworkInterface `xml:"networkInterfaceSet>item"`
	EnaSupport            bool                  `xml:"enaSupport"`
	PlatformDetails       string                `xml:"platformDetails"`
}

type xmlReservation struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Groups        []xmlGroup    `xml:"groupSet>item"`
	Instances     []xmlInstance `xml:"instancesSet>item"`
}

type xmlRunInstancesResponse struct {
	meta
	xmlReservation
}

type xmlDescribeInstancesResponse struct {
	meta
	Reservations []xmlReservation `xml:"reservationSet>item"`
	NextToken    string           `xml:"nextToken,omitempty"`
}

type xmlStateChange struct {
	InstanceID    string   `xml:"instanceId"`
	CurrentState  xmlState `xml:"currentState"`
	PreviousState xmlState `xml:"previousState"`
}

// xmlInstancesStateResponse answers TerminateInstances, StopInstances and
// StartInstances.
type xmlInstancesStateResponse struct {
	meta
	Instances []xmlStateChange `xml:"instancesSet>item"`
}

// Images.

type xmlEbs struct {
	SnapshotID          string `xml:"snapshotId"`
	VolumeSize          int    `xml:"volumeSize"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
	VolumeType          string `xml:"volumeType"`
	Encrypted           bool   `xml:"encrypted"`
}

type xmlBlockDevice struct {
	DeviceName string  `xml:"deviceName"`
	Ebs        *xmlEbs `xml:"ebs,omitempty"`
}

type xmlImage struct {
	ImageID            string           `xml:"imageId"`
	ImageLocation      string           `xml:"imageLocation"`
	State              string           `xml:"imageState"`
	OwnerID            string           `xml:"imageOwnerId"`
	CreationDate       string           `xml:"creationDate"`
	IsPublic           bool             `xml:"isPublic"`
	Architecture       string           `xml:"architecture"`
	ImageType          string           `xml:"imageType"`
	Name               string           `xml:"name"`
	Description        string           `xml:"description"`
	OwnerAlias         string           `xml:"imageOwnerAlias,omitempty"`
	RootDeviceType     string           `xml:"rootDeviceType"`
	RootDeviceName     string           `xml:"rootDeviceName"`
	BlockDevices       []xmlBlockDevice `xml:"blockDeviceMapping>item"`
	VirtualizationType string           `xml:"virtualizationType"`
	Hypervisor         string           `xml:"hypervisor"`
	EnaSupport         bool             `xml:"enaSupport"`
	SriovNetSupport    string           `xml:"sriovNetSupport"`
	PlatformDetails    string           `xml:"platformDetails"`
	UsageOperation     string           `xml:"usageOperation"`
}

type xmlDescribeImagesResponse struct {
	meta
	Images []xmlImage `xml:"imagesSet>item"`
}

// Regions, zones, account, VPCs and subnets.

type xmlRegion struct {
	Name        string `xml:"regionName"`
	Endpoint    string `xml:"regionEndpoint"`
	OptInStatus string `xml:"optInStatus"`
}

type xmlDescribeRegionsResponse struct {
	meta
	Regions []xmlRegion `xml:"regionInfo>item"`
}

type xmlZone struct {
	Name               string   `xml:"zoneName"`
	ID                 string   `xml:"zoneId"`
	State              string   `xml:"zoneState"`
	Region             string   `xml:"regionName"`
	OptInStatus        string   `xml:"optInStatus"`
	GroupName          string   `xml:"groupName"`
	NetworkBorderGroup string   `xml:"networkBorderGroup"`
	ZoneType           string   `xml:"zoneType"`
	Messages           struct{} `xml:"messageSet"`
}

type xmlDescribeAvailabilityZonesResponse struct {
	meta
	Zones []xmlZone `xml:"availabilityZoneInfo>item"`
}

type xmlAttributeValue struct {
	Value string `xml:"attributeValue"`
}

type xmlAccountAttribute struct {
	Name   string              `xml:"attributeName"`
	Values []xmlAttributeValue `xml:"attributeValueSet>item"`
}

type xmlDescribeAccountAttributesResponse struct {
	meta
	Attributes []xmlAccountAttribute `xml:"accountAttributeSet>item"`
}

type xmlCidrState struct {
	State string `xml:"state"`
}

type xmlCidrAssociation struct {
	AssociationID string       `xml:"associationId"`
	CidrBlock     string       `xml:"cidrBlock"`
	State         xmlCidrState `xml:"cidrBlockState"`
}

type xmlVpc struct {
	VpcID            string               `xml:"vpcId"`
	OwnerID          string               `xml:"ownerId"`
	State            string               `xml:"state"`
	CidrBlock        string               `xml:"cidrBlock"`
	CidrAssociations []xmlCidrAssociation `xml:"cidrBlockAssociationSet>item"`
	DhcpOptionsID    string               `xml:"dhcpOptionsId"`
	InstanceTenancy  string               `xml:"instanceTenancy"`
	IsDefault        bool                 `xml:"isDefault"`
	Tags             []xmlTag             `xml:"tagSet>item"`
}

type xmlDescribeVpcsResponse struct {
	meta
	Vpcs []xmlVpc `xml:"vpcSet>item"`
}

type xmlSubnet struct {
	SubnetID            string   `xml:"subnetId"`
	SubnetArn           string   `xml:"subnetArn"`
	State               string   `xml:"state"`
	OwnerID             string   `xml:"ownerId"`
	VpcID               string   `xml:"vpcId"`
	CidrBlock           string   `xml:"cidrBlock"`
	AvailableIPs        int      `xml:"availableIpAddressCount"`
	AvailabilityZone    string   `xml:"availabilityZone"`
	AvailabilityZoneID  string   `xml:"availabilityZoneId"`
	DefaultForAz        bool     `xml:"defaultForAz"`
	MapPublicIPOnLaunch bool     `xml:"mapPublicIpOnLaunch"`
	Tags                []xmlTag `xml:"tagSet>item"`
}

type xmlDescribeSubnetsResponse struct {
	meta
	Subnets []xmlSubnet `xml:"subnetSet>item"`
}

// Security groups.

type xmlIPRange struct {
	CidrIP      string `xml:"cidrIp"`
	Description string `xml:"description,omitempty"`
}

type xmlUserIDGroupPair struct {
	UserID      string `xml:"userId"`
	GroupID     string `xml:"groupId"`
	Description string `xml:"description,omitempty"`
}

type xmlIPPermission struct {
	Protocol string               `xml:"ipProtocol"`
	FromPort *int                 `xml:"fromPort,omitempty"`
	ToPort   *int                 `xml:"toPort,omitempty"`
	Groups   []xmlUserIDGroupPair `xml:"groups>item"`
	IPRanges []xmlIPRange         `xml:"ipRanges>item"`
	IPv6     struct{}             `xml:"ipv6Ranges"`
	Prefixes struct{}             `xml:"prefixListIds"`
}

type xmlSecurityGroup struct {
	OwnerID     string            `xml:"ownerId"`
	GroupID     string            `xml:"groupId"`
	GroupName   string            `xml:"groupName"`
	Description string            `xml:"groupDescription"`
	VpcID       string            `xml:"vpcId"`
	Ingress     []xmlIPPermission `xml:"ipPermissions>item"`
	Egress      []xmlIPPermission `xml:"ipPermissionsEgress>item"`
	Tags        []xmlTag          `xml:"tagSet>item"`
}

type xmlDescribeSecurityGroupsResponse struct {
	meta
	Groups []xmlSecurityGroup `xml:"securityGroupInfo>item"`
}

type xmlCreateSecurityGroupResponse struct {
	meta
	Return  bool     `xml:"return"`
	GroupID string   `xml:"groupId"`
	Tags    []xmlTag `xml:"tagSet>item"`
}

type xmlReferencedGroup struct {
	GroupID string `xml:"groupId"`
	UserID  string `xml:"userId"`
}

type xmlSecurityGroupRule struct {
	ID           string              `xml:"securityGroupRuleId"`
	GroupID      string              `xml:"groupId"`
	GroupOwnerID string              `xml:"groupOwnerId"`
	IsEgress     bool                `xml:"isEgress"`
	Protocol     string              `xml:"ipProtocol"`
	FromPort     int                 `xml:"fromPort"`
	ToPort       int                 `xml:"toPort"`
	CidrIPv4     string              `xml:"cidrIpv4,omitempty"`
	Referenced   *xmlReferencedGroup `xml:"referencedGroupInfo,omitempty"`
	Description  string              `xml:"description,omitempty"`
}

type xmlAuthorizeResponse struct {
	meta
	Return bool                   `xml:"return"`
	Rules  []xmlSecurityGroupRule `xml:"securityGroupRuleSet>item"`
}

// Key pairs.

type xmlImportKeyPairResponse struct {
	meta
	KeyFingerprint string   `xml:"keyFingerprint"`
	KeyName        string   `xml:"keyName"`
	KeyPairID      string   `xml:"keyPairId"`
	Tags           []xmlTag `xml:"tagSet>item"`
}

type xmlCreateKeyPairResponse struct {
	meta
	KeyName        string   `xml:"keyName"`
	KeyFingerprint string   `xml:"keyFingerprint"`
	KeyMaterial    string   `xml:"keyMaterial"`
	KeyPairID      string   `xml:"keyPairId"`
	Tags           []xmlTag `xml:"tagSet>item"`
}

type xmlKeyPairInfo struct {
	KeyPairID      string   `xml:"keyPairId"`
	KeyFingerprint string   `xml:"keyFingerprint"`
	KeyName        string   `xml:"keyName"`
	KeyType        string   `xml:"keyType"`
	PublicKey      string   `xml:"publicKey,omitempty"`
	CreateTime     string   `xml:"createTime"`
	Tags           []xmlTag `xml:"tagSet>item"`
}

type xmlDescribeKeyPairsResponse struct {
	meta
	Keys []xmlKeyPairInfo `xml:"keySet>item"`
}
