package gcp

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/googleapi"

	"github.com/provisionhq/provision/providers"
)

// errAlreadyExists: a create named an instance that exists (a concurrent or
// earlier create with another requestId); Create re-lists and adopts it.
var errAlreadyExists = errors.New("already exists")

// where is the context every error of one call carries.
type where struct{ zone, pool string }

func (w where) err(kind error, code, msg string) *providers.Error {
	return &providers.Error{Kind: kind, Cloud: "gcp", Location: w.zone, Pool: w.pool, Code: code, Message: oneLine(msg)}
}

// classifyAPI maps an HTTP-level API error (a *googleapi.Error, possibly
// inside an apierror.APIError) to a providers kind: a 5xx, like a
// connection lost before the answer, is ErrUnavailable. Other errors
// (context, a failed dial) are returned as they are.
func (w where) classifyAPI(err error) error {
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		if providers.ConnectionLost(err) {
			return w.err(providers.ErrUnavailable, "", err.Error())
		}
		return err
	}
	reason := ""
	for _, e := range ge.Errors {
		if e.Reason != "" {
			reason = e.Reason
			break
		}
	}
	code := strconv.Itoa(ge.Code)
	if reason != "" {
		code = reason
	}
	var kind error
	switch {
	case ge.Code == http.StatusTooManyRequests, reason == "rateLimitExceeded", reason == "userRateLimitExceeded":
		kind = providers.ErrThrottled
	case ge.Code >= http.StatusInternalServerError: // backendError, internalError
		kind = providers.ErrUnavailable
	case ge.Code == http.StatusNotFound:
		kind = providers.ErrNotFound
	case ge.Code == http.StatusConflict || reason == "alreadyExists":
		kind = errAlreadyExists
	case reason == "quotaExceeded":
		kind = providers.ErrQuota
	case ge.Code == http.StatusBadRequest:
		kind = providers.ErrInvalidSpec
	default:
		return fmt.Errorf("gcp %s: %w", w.zone, err)
	}
	e := w.err(kind, code, ge.Message)
	if s := ge.Header.Get("Retry-After"); s != "" {
		if n, perr := strconv.Atoi(s); perr == nil {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return e
}

// classifyCreate is classifyAPI for a create call: a 404 there names a
// resource the create references (an image, a disk), which no retry will
// make exist, so the spec is invalid rather than a machine not found.
func (w where) classifyCreate(err error) error {
	err = w.classifyAPI(err)
	var pe *providers.Error
	if errors.As(err, &pe) && errors.Is(pe.Kind, providers.ErrNotFound) {
		pe.Kind = providers.ErrInvalidSpec
	}
	return err
}

// classifyOp maps a finished operation's error to a providers kind; nil
// when the operation succeeded.
func (w where) classifyOp(op *computepb.Operation) error {
	errs := op.GetError().GetErrors()
	if len(errs) == 0 {
		if c := op.GetHttpErrorStatusCode(); c >= 300 {
			return w.err(errors.New("operation failed"), strconv.Itoa(int(c)), op.GetHttpErrorMessage())
		}
		return nil
	}
	e := errs[0]
	code, msg := e.GetCode(), e.GetMessage()
	switch code {
	case "QUOTA_EXCEEDED":
		return w.err(providers.ErrQuota, code, quotaName(e)+": "+msg)
	case "ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "RESOURCE_POOL_EXHAUSTED":
		return w.err(providers.ErrCapacity, code, msg)
	case "RESOURCE_ALREADY_EXISTS":
		return w.err(errAlreadyExists, code, msg)
	case "RESOURCE_NOT_FOUND":
		return w.err(providers.ErrNotFound, code, msg)
	case "RATE_LIMIT_EXCEEDED":
		return w.err(providers.ErrThrottled, code, msg)
	}
	if c := op.GetHttpErrorStatusCode(); c == http.StatusBadRequest || strings.HasPrefix(code, "INVALID") {
		return w.err(providers.ErrInvalidSpec, code, msg)
	}
	return fmt.Errorf("gcp %s pool %q: operation %s failed (%s): %s", w.zone, w.pool, op.GetName(), code, oneLine(msg))
}

// quotaName names the quota from the typed error details GCE attaches;
// only when they are missing does it fall back to the message text, which
// is the one place that reads GCE's prose ("Quota 'CPUS' exceeded.").
func quotaName(e *computepb.Errors) string {
	for _, d := range e.GetErrorDetails() {
		if q := d.GetQuotaInfo(); q != nil && q.GetMetricName() != "" {
			s := "quota " + q.GetMetricName()
			if q.LimitName != nil || q.Limit != nil {
				s += fmt.Sprintf(" (%s, limit %g)", q.GetLimitName(), q.GetLimit())
			}
			return s
		}
	}
	if m := quotaMsgRE.FindStringSubmatch(e.GetMessage()); m != nil {
		return "quota " + m[1]
	}
	return "quota (unnamed)"
}

var quotaMsgRE = regexp.MustCompile(`Quota '([^']+)' exceeded`)

// oneLine keeps an error on one line (GCE messages carry double spaces and
// sometimes newlines).
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
