package ec2

import "encoding/xml"

// The EC2 Query API's XML documents, as far as the emulated actions need.
// Element names are the wire names aws-sdk-go-v2's ec2query deserializers
// read.

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

type xmlState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type xmlGroup struct {
	GroupID string `xml:"groupId"`
}

type xmlStateReason struct {
	Code    string `xml:"code"`
	Message string `xml:"message"`
}

type xmlInstance struct {
	InstanceID       string          `xml:"instanceId"`
	ImageID          string          `xml:"imageId"`
	State            xmlState        `xml:"instanceState"`
	PrivateDNSName   string          `xml:"privateDnsName"`
	DNSName          string          `xml:"dnsName"`
	StateReason      *xmlStateReason `xml:"stateReason,omitempty"`
	KeyName          string          `xml:"keyName,omitempty"`
	AmiLaunchIndex   int             `xml:"amiLaunchIndex"`
	InstanceType     string          `xml:"instanceType"`
	LaunchTime       string          `xml:"launchTime"`
	AvailabilityZone string          `xml:"placement>availabilityZone"`
	SubnetID         string          `xml:"subnetId,omitempty"`
	VpcID            string          `xml:"vpcId,omitempty"`
	PrivateIP        string          `xml:"privateIpAddress,omitempty"`
	Groups           []xmlGroup      `xml:"groupSet>item"`
	ClientToken      string          `xml:"clientToken,omitempty"`
	Tags             []xmlTag        `xml:"tagSet>item"`
}

type xmlReservation struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Groups        []xmlGroup    `xml:"groupSet>item"`
	Instances     []xmlInstance `xml:"instancesSet>item"`
}

type xmlRunInstancesResponse struct {
	XMLName   xml.Name `xml:"RunInstancesResponse"`
	Xmlns     string   `xml:"xmlns,attr"`
	RequestID string   `xml:"requestId"`
	xmlReservation
}

type xmlDescribeInstancesResponse struct {
	XMLName      xml.Name         `xml:"DescribeInstancesResponse"`
	Xmlns        string           `xml:"xmlns,attr"`
	RequestID    string           `xml:"requestId"`
	Reservations []xmlReservation `xml:"reservationSet>item"`
	NextToken    string           `xml:"nextToken,omitempty"`
}

type xmlStateChange struct {
	InstanceID    string   `xml:"instanceId"`
	CurrentState  xmlState `xml:"currentState"`
	PreviousState xmlState `xml:"previousState"`
}

type xmlTerminateInstancesResponse struct {
	XMLName   xml.Name         `xml:"TerminateInstancesResponse"`
	Xmlns     string           `xml:"xmlns,attr"`
	RequestID string           `xml:"requestId"`
	Instances []xmlStateChange `xml:"instancesSet>item"`
}

type xmlCreateTagsResponse struct {
	XMLName   xml.Name `xml:"CreateTagsResponse"`
	Xmlns     string   `xml:"xmlns,attr"`
	RequestID string   `xml:"requestId"`
	Return    bool     `xml:"return"`
}

type xmlImage struct {
	ImageID        string `xml:"imageId"`
	State          string `xml:"imageState"`
	RootDeviceName string `xml:"rootDeviceName"`
	RootDeviceType string `xml:"rootDeviceType"`
}

type xmlDescribeImagesResponse struct {
	XMLName   xml.Name   `xml:"DescribeImagesResponse"`
	Xmlns     string     `xml:"xmlns,attr"`
	RequestID string     `xml:"requestId"`
	Images    []xmlImage `xml:"imagesSet>item"`
}
