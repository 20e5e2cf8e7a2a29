package agent

// Event kinds.
const (
	// EventState: the device's state changed (Event.State).
	EventState = "state"
	// EventRefusal: an assignment or image was refused (Event.Code, Event.Reason).
	EventRefusal = "refusal"
	// EventReport: the server acknowledged a report (Event.State).
	EventReport = "report"
	// EventCommitted: a commit raised the security floor
	// (Event.SecurityFloor; Event.Target is the committed version).
	EventCommitted = "committed"
	// EventKeys: the device follows a new assignment key set (Event.Reason
	// lists the trusted key IDs and the set's serial).
	EventKeys = "keys"
)

// Device states in events (Event.State, kind EventState). Besides the
// report states (downloading … rolledback) the agent uses these.
const (
	StateIdle      = "idle"      // nothing to do
	StateCanceled  = "canceled"  // the server canceled the update
	StateReverted  = "reverted"  // booted back into the previous version
	StateRebooting = "rebooting" // installed, waiting for the reboot
)

// Event tells an observer (Config.OnEvent) what the agent did.
type Event struct {
	Kind    string
	State   string // for EventState and EventReport
	Code    string // refusal code, for EventRefusal
	Reason  string // failure or refusal reason
	Rollout string
	// Version is the running version; Target the version being installed.
	Version string
	Target  string
	// Progress is the download progress in percent, for "downloading".
	Progress int
	// SecurityFloor is the new committed floor, for EventCommitted.
	SecurityFloor int64
}
