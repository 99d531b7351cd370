package aws

import (
	"errors"
	"strconv"
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

	"InsufficientInstanceCapacity": providers.ErrCapacity,
	"InsufficientCapacity":         providers.ErrCapacity,
	"Unsupported":                  providers.ErrCapacity, // type not offered in that zone

	"InvalidInstanceID.NotFound": providers.ErrNotFound,

	"InvalidParameterValue":       providers.ErrInvalidSpec,
	"InvalidParameterCombination": providers.ErrInvalidSpec,
	"InvalidAMIID.Malformed":      providers.ErrInvalidSpec,
	"InvalidAMIID.NotFound":       providers.ErrInvalidSpec,
	"InvalidAMIID.Unavailable":    providers.ErrInvalidSpec,
	"InvalidSubnetID.NotFound":    providers.ErrInvalidSpec,
	"InvalidGroup.NotFound":       providers.ErrInvalidSpec,
	"InvalidKeyPair.NotFound":     providers.ErrInvalidSpec,
	"InvalidInstanceType":         providers.ErrInvalidSpec,
	"UnauthorizedOperation":       providers.ErrInvalidSpec,
	"AuthFailure":                 providers.ErrInvalidSpec,
	"IdempotentParameterMismatch": providers.ErrInvalidSpec,
}

// classify turns an SDK error into a *providers.Error naming the cloud,
// region and pool, classified by the API's error code (never its text).
// Errors without an API code (context, transport) are returned as they are.
func classify(err error, region, pool string) error {
	if err == nil {
		return nil
	}
	var api smithy.APIError
	if !errors.As(err, &api) {
		return err
	}
	kind, ok := kinds[api.ErrorCode()]
	if !ok {
		kind = err // unclassified: keep the SDK error itself as the cause
	}
	pe := &providers.Error{Kind: kind, Cloud: cloud, Location: region, Pool: pool, Code: api.ErrorCode(), Message: api.ErrorMessage()}
	var resp *smithyhttp.ResponseError
	if errors.As(err, &resp) && resp.Response != nil {
		if s, err := strconv.Atoi(resp.Response.Header.Get("Retry-After")); err == nil && s > 0 {
			pe.RetryAfter = time.Duration(s) * time.Second
		}
	}
	return pe
}
