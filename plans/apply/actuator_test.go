package apply

import "github.com/provisionhq/provision/autoscaler"

// The autoscaler acts through the engine.
var _ autoscaler.Actuator = Actuator{}
