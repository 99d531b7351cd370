package ratelimit

// OpenStack publishes no API rate limits: each cloud's operator sets its
// own. Nova once shipped a rate-limiting middleware whose limits the
// operator configured in api-paste.ini (answering 413 or 403 when
// exceeded, "Configure Compute API rate limiting",
// https://docs.openstack.org/mitaka/config-reference/compute/api.html),
// and upstream documents no default that applies across clouds; what
// every Nova has are per-project quotas on resources (instances, cores,
// RAM), which cloudsim models as Faults.InstanceQuota. So there is no Nova
// table here: a benchmark against cloudsim's OpenStack runs unthrottled.
