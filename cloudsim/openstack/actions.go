package openstack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/provisionhq/provision/cloudsim"
)

// powerTimeout bounds one backing power-off or power-on.
const powerTimeout = 2 * time.Minute

// serverAction serves POST /servers/{id}/action for os-stop and os-start:
// 202 at once, the server in task_state powering-off/-on while the
// backing works, then SHUTOFF or ACTIVE. Backed servers need a backing
// that implements cloudsim.Power.
func (s *Server) serverAction(w http.ResponseWriter, r *http.Request, id string) {
	if s.throttled(w, r, "servers.action") {
		return
	}
	var body map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body) != 1 {
		novaError(w, http.StatusBadRequest, "badRequest", "Malformed request body")
		return
	}
	var action string
	for k := range body {
		action = k
	}
	var verb, want, task string
	switch action {
	case "os-stop":
		verb, want, task = "stop", "ACTIVE", "powering-off"
	case "os-start":
		verb, want, task = "start", "SHUTOFF", "powering-on"
	default:
		novaError(w, http.StatusBadRequest, "badRequest", "There is no such action: "+action)
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sv, ok := s.servers[id]
	if !ok || (!sv.goneAt.IsZero() && !now.Before(sv.goneAt)) {
		novaError(w, http.StatusNotFound, "itemNotFound", fmt.Sprintf("Instance %s could not be found.", id))
		return
	}
	status, curTask := sv.status(now)
	if curTask != "" {
		novaError(w, http.StatusConflict, "conflictingRequest", fmt.Sprintf("Cannot '%s' instance %s while it is in task_state %s", verb, id, curTask))
		return
	}
	if status != want {
		novaError(w, http.StatusConflict, "conflictingRequest", fmt.Sprintf("Cannot '%s' instance %s while it is in vm_state %s", verb, id, vmStates[status]))
		return
	}
	var power cloudsim.Power
	if s.opts.Backing != nil {
		p, ok := s.opts.Backing.(cloudsim.Power)
		if !ok {
			novaError(w, http.StatusConflict, "conflictingRequest", fmt.Sprintf("Cannot '%s' instance %s: its host cannot be powered off and on", verb, id))
			return
		}
		power = p
	}
	if power == nil {
		sv.stopped = action == "os-stop"
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if s.closed {
		novaError(w, http.StatusServiceUnavailable, "serviceUnavailable", "emulator is closed")
		return
	}
	sv.powerTask = task
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), powerTimeout)
	s.cancel[sv.id] = cancel
	s.wg.Add(1)
	go s.power(ctx, cancel, sv, power, action == "os-stop")
	w.WriteHeader(http.StatusAccepted)
}

// power runs one power-off or power-on on the backing and records its
// outcome; a failure leaves the server as it was, with no task.
func (s *Server) power(ctx context.Context, cancel context.CancelFunc, sv *server, p cloudsim.Power, off bool) {
	defer s.wg.Done()
	defer cancel()
	var addr string
	var err error
	if off {
		err = p.PowerOff(ctx, sv.id)
	} else {
		addr, err = p.PowerOn(ctx, sv.id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cancel, sv.id)
	sv.powerTask = ""
	if err != nil {
		s.log.Warn("backing power change failed", "server", sv.id, "off", off, "err", err)
		return
	}
	sv.stopped = off
	if addr != "" {
		sv.address = addr
	}
}
