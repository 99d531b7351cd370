package openstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/provisionhq/provision/providers"
)

// quotaName pulls the quota's name out of Nova's 403 message ("Quota
// exceeded for instances: Requested 3, but already used 9 of 10
// instances"). It only names the quota in the error text; the kind comes
// from the status code.
var quotaName = regexp.MustCompile(`(?i)quota exceeded for (\w+)`)

// noValidHost is the fault of a server the scheduler could place nowhere.
// Nova exposes no code for it (the fault code is a generic 500), so the
// fault message is the only signal there is.
var noValidHost = regexp.MustCompile(`(?i)no valid host`)

// classify turns a gophercloud error into a *providers.Error when its
// status code is one the engine acts on. creating marks a server create,
// where a 403 is Nova's quota refusal. A 5xx, like a connection lost
// before the answer, is ErrUnavailable. Other errors are returned wrapped.
func (p *Provider) classify(err error, region, pool string, creating bool) error {
	if err == nil {
		return nil
	}
	var reauth *gophercloud.ErrUnableToReauthenticate
	if errors.As(err, &reauth) && reauth.ErrReauth != nil {
		// A token that expired, then Keystone failing the new one: the
		// request itself was refused (401), so this is Keystone's failure.
		if ke := p.classify(reauth.ErrReauth, region, pool, false); errors.Is(ke, providers.ErrUnavailable) {
			return ke
		}
	}
	var uc gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &uc) {
		if providers.ConnectionLost(err) {
			return &providers.Error{Kind: providers.ErrUnavailable, Cloud: "openstack", Location: region, Pool: pool, Message: err.Error()}
		}
		return err
	}
	e := &providers.Error{Cloud: "openstack", Location: region, Pool: pool, Code: strconv.Itoa(uc.Actual), Message: apiMessage(uc.Body)}
	switch uc.Actual {
	case http.StatusTooManyRequests, http.StatusRequestEntityTooLarge:
		e.Kind, e.Code = providers.ErrThrottled, "overLimit"
		e.RetryAfter = retryAfter(uc.ResponseHeader)
	case http.StatusForbidden:
		if !creating {
			return err
		}
		e.Kind, e.Code = providers.ErrQuota, "QuotaExceeded"
		if m := quotaName.FindStringSubmatch(e.Message); m != nil {
			e.Message = fmt.Sprintf("quota %q: %s", m[1], e.Message)
		}
	case http.StatusNotFound:
		e.Kind = providers.ErrNotFound
	case http.StatusBadRequest:
		e.Kind, e.Code = providers.ErrInvalidSpec, "badRequest"
	default:
		if uc.Actual < http.StatusInternalServerError {
			return err
		}
		// computeFault, serviceUnavailable, a Neutron or Keystone 5xx.
		e.Kind = providers.ErrUnavailable
		e.RetryAfter = retryAfter(uc.ResponseHeader)
	}
	return e
}

// apiMessage reads the message out of a Nova ({"kind": {"message"}}),
// Neutron ({"NeutronError": {"message"}}) or Keystone error body.
func apiMessage(body []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) == nil {
		for _, v := range m {
			var inner struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(v, &inner) == nil && inner.Message != "" {
				return inner.Message
			}
		}
	}
	const max = 200
	if len(body) > max {
		body = body[:max]
	}
	return string(body)
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
