package apply

import "time"

// Stage names a step of a machine's pipeline.
type Stage string

const (
	StageCreate  Stage = "create"
	StageSSH     Stage = "ssh"
	StageRuntime Stage = "runtime"
	StageJoin    Stage = "join"
	StageDrain   Stage = "drain"
	StageDelete  Stage = "delete"
)

// Status is where a stage is.
type Status string

const (
	StatusStart Status = "start"
	StatusDone  Status = "done"
	StatusFail  Status = "fail"
	StatusSkip  Status = "skip"
)

// Event is one progress report about one machine.
type Event struct {
	Time    time.Time `json:"time"`
	Machine string    `json:"machine"`
	Pool    string    `json:"pool"`
	Stage   Stage     `json:"stage"`
	Status  Status    `json:"status"`
	Detail  string    `json:"detail,omitempty"`
	Err     string    `json:"error,omitempty"`
}
