package aws

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/provisionhq/provision/providers"
)

// kinds maps EC2 error codes to the kinds the engine acts on. Codes not
// listed stay unclassified (wrapped as they are).
var kinds = map[string]error{
	"RequestLimitExceeded": providers.ErrThrottled,
	"Throttling":           providers.ErrThrottled,
	"ThrottlingException":  providers.ErrThrottled,

	"InstanceLimitExceeded":        providers.ErrQuota,
	"VcpuLimitExceeded":            providers.ErrQuota,
	"MaxSpotInstanceCountExceeded": providers.ErrQuota,

	// Capacity: this pool cannot grow now, another pool (zone, type,
	// cloud) may. The spot codes belong here too: UnfulfillableCapacity is
	// "no spare capacity for spot now", and SpotMaxPriceTooLow means the
	// spot price is above what the request pays (provision sets no max
	// price, so EC2 caps it at the on-demand price and this is the market
	// moving, not a setting to fix).
	"InsufficientInstanceCapacity": providers.ErrCapacity,
	"InsufficientCapacity":         providers.ErrCapacity,
	"InsufficientHostCapacity":     providers.ErrCapacity,
	"UnfulfillableCapacity":        providers.ErrCapacity,
	"SpotMaxPriceTooLow":           providers.ErrCapacity,

	"InvalidInstanceID.NotFound": providers.ErrNotFound,

	// EC2 failing (500, 503): the call may or may not have taken effect.
	// The gate sends these again (a launch with the same ClientToken);
	// one that reaches a caller has spent its attempts. Any other 5xx
	// code is unavailability too (classify).
	"InternalError":      providers.ErrUnavailable,
	"InternalFailure":    providers.ErrUnavailable,
	"Unavailable":        providers.ErrUnavailable,
	"ServiceUnavailable": providers.ErrUnavailable,

	// Invalid spec: the request fails the same way however often it is
	// sent. Unsupported is among them: EC2 documents it as "the request
	// includes an unsupported operation" (an instance type the image or
	// the subnet's zone does not offer, a feature the type lacks). It is
	// not a shortage: the same pool fails again tomorrow, so backing the
	// pool off as if for capacity would only hide a plan to fix.
	"Unsupported":                 providers.ErrInvalidSpec,
	"InvalidParameterValue":       providers.ErrInvalidSpec,
	"InvalidParameterCombination": providers.ErrInvalidSpec,
	"InvalidAMIID.Malformed":      providers.ErrInvalidSpec,
	"InvalidAMIID.NotFound":       providers.ErrInvalidSpec,
	"InvalidAMIID.Unavailable":    providers.ErrInvalidSpec,
	"InvalidSubnetID.NotFound":    providers.ErrInvalidSpec,
	"InvalidSubnetID.Malformed":   providers.ErrInvalidSpec,
	"InvalidGroup.NotFound":       providers.ErrInvalidSpec,
	"InvalidGroupId.Malformed":    providers.ErrInvalidSpec,
	"InvalidKeyPair.NotFound":     providers.ErrInvalidSpec,
	"InvalidInstanceType":         providers.ErrInvalidSpec,
	"UnauthorizedOperation":       providers.ErrInvalidSpec,
	"AuthFailure":                 providers.ErrInvalidSpec,
	"IdempotentParameterMismatch": providers.ErrInvalidSpec,
}

// maxMessage bounds an EC2 message in an error: some carry kilobytes
// (UnauthorizedOperation's encoded authorization failure message).
const maxMessage = 300

// classify turns an SDK error into a *providers.Error naming the cloud,
// region and pool, classified by the API's error code (never its text); a
// code it does not know with a 5xx status, and a connection lost before
// the answer, are ErrUnavailable. Other errors without an API code
// (context, a failed dial) are returned as they are.
func classify(err error, region, pool string) error {
	if err == nil {
		return nil
	}
	var api smithy.APIError
	if !errors.As(err, &api) {
		if providers.ConnectionLost(err) {
			return &providers.Error{Kind: providers.ErrUnavailable, Cloud: cloud, Location: region, Pool: pool, Message: oneLine(err.Error())}
		}
		return err
	}
	var resp *smithyhttp.ResponseError
	hasResp := errors.As(err, &resp) && resp.Response != nil
	kind, ok := kinds[api.ErrorCode()]
	switch {
	case ok:
	case hasResp && resp.HTTPStatusCode() >= 500:
		kind = providers.ErrUnavailable
	default:
		// Unclassified: keep the SDK error as the cause for errors.As, but
		// print only its code and message, not the SDK's request ID dump.
		kind = &unclassified{err: err}
	}
	pe := &providers.Error{Kind: kind, Cloud: cloud, Location: region, Pool: pool, Code: api.ErrorCode(), Message: oneLine(api.ErrorMessage())}
	if hasResp {
		if s, err := strconv.Atoi(resp.Response.Header.Get("Retry-After")); err == nil && s > 0 {
			pe.RetryAfter = time.Duration(s) * time.Second
		}
	}
	return pe
}

// unclassified is the kind of an EC2 error no kind fits.
type unclassified struct{ err error }

func (u *unclassified) Error() string { return "EC2 error" }
func (u *unclassified) Unwrap() error { return u.err }

// oneLine collapses a cloud message to one line of bounded length.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > maxMessage {
		s = string(r[:maxMessage]) + "…"
	}
	return s
}

// invalidValue says, in the plan's words, which pool setting EC2 refused
// and its value, for the invalid-spec codes that are about one setting.
// Codes about the request as a whole (InvalidParameterValue,
// InvalidParameterCombination, Unsupported) are not here: EC2's own
// message names the parameter, and is kept.
var invalidValue = map[string]func(b *batch) string{
	"InvalidInstanceType": func(b *batch) string {
		return fmt.Sprintf("instance_type %q is not an EC2 instance type", b.set.InstanceType)
	},
	"InvalidAMIID.Malformed": func(b *batch) string {
		return fmt.Sprintf("ami %q is not a well-formed image ID (ami- and 8 or 17 hex digits)", b.set.AMI)
	},
	"InvalidAMIID.NotFound": func(b *batch) string {
		return fmt.Sprintf("ami %q is not an image this account can launch in %s", b.set.AMI, b.region)
	},
	"InvalidAMIID.Unavailable": func(b *batch) string {
		return fmt.Sprintf("ami %q is no longer available (deregistered or failed)", b.set.AMI)
	},
	"InvalidSubnetID.NotFound": func(b *batch) string {
		return fmt.Sprintf("subnet_id %q is not a subnet of this account in %s", b.set.SubnetID, b.region)
	},
	"InvalidSubnetID.Malformed": func(b *batch) string {
		return fmt.Sprintf("subnet_id %q is not a well-formed subnet ID", b.set.SubnetID)
	},
	"InvalidGroup.NotFound": func(b *batch) string {
		return fmt.Sprintf("security_group_ids %q: a group is not in %s or not in the subnet's VPC", strings.Join(b.set.SecurityGroupIDs, ","), b.region)
	},
	"InvalidGroupId.Malformed": func(b *batch) string {
		return fmt.Sprintf("security_group_ids %q: a group ID is not well-formed", strings.Join(b.set.SecurityGroupIDs, ","))
	},
	"InvalidKeyPair.NotFound": func(b *batch) string {
		return fmt.Sprintf("key_name %q is not a key pair of this account in %s", b.set.KeyName, b.region)
	},
}

// explainInvalid rewrites an invalid-spec error of a launch so its one line
// names the pool setting and the value EC2 refused, in the words of the
// plan; other errors are returned as they are.
func explainInvalid(err error, b *batch) error {
	var pe *providers.Error
	if !errors.As(err, &pe) || !errors.Is(pe.Kind, providers.ErrInvalidSpec) {
		return err
	}
	switch f, ok := invalidValue[pe.Code]; {
	case ok:
		pe.Message = f(b)
	case pe.Code == "UnauthorizedOperation" || pe.Code == "AuthFailure":
		pe.Message = "the AWS credentials may not launch instances here: " + pe.Message
	default:
		// EC2's message names the parameter; say what the pool asked for.
		pe.Message = fmt.Sprintf("instance_type %q, ami %q: %s", b.set.InstanceType, b.set.AMI, pe.Message)
	}
	return pe
}
