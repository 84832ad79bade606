package buffer

import (
	"errors"
	"fmt"
	"time"
)

// MaxPayload is the largest payload Append accepts: the platform's message
// size limit (protocol.md §2.12). Larger payloads are refused with
// ErrTooLarge and never queued.
const MaxPayload = 131072

// maxTopic bounds the topic stored with each record (the record codec keeps
// its length in 16 bits).
const maxTopic = 65535

// FullPolicy says what Append does when the buffer holds MaxBytes.
type FullPolicy int

const (
	// DropOldest removes the oldest events of the largest queue (by bytes)
	// until the new event fits. The appended event is always stored. It is
	// the zero value.
	DropOldest FullPolicy = iota
	// DropNewest refuses the new event with ErrFull and keeps the backlog.
	DropNewest
)

// String returns the configuration spelling of p.
func (p FullPolicy) String() string {
	switch p {
	case DropOldest:
		return "drop_oldest"
	case DropNewest:
		return "drop_newest"
	}
	return fmt.Sprintf("FullPolicy(%d)", int(p))
}

// ParseFullPolicy maps the configuration spelling ("drop_oldest",
// "drop_newest") to a FullPolicy.
func ParseFullPolicy(s string) (FullPolicy, error) {
	switch s {
	case "drop_oldest":
		return DropOldest, nil
	case "drop_newest":
		return DropNewest, nil
	}
	return 0, fmt.Errorf("buffer: unknown full policy %q (want drop_oldest or drop_newest)", s)
}

// Defaults applied by Open to zero fields of Config.
const (
	DefaultMaxBytes = 256 << 20
	DefaultInFlight = 64
	DefaultMinFree  = 64 << 20
	// MinFreeFloor is the smallest MinFree accepted: acknowledgements may
	// still use half of it and Badger needs room to rotate a memtable log
	// (allocated in full, twice the memtable size) and flush a table.
	MinFreeFloor = 16 << 20
)

// defaultMemTableMiB sizes Badger's memtables. Each one is a Go-heap arena
// of ~1.3x this size, two exist while one is flushed, and the flush builds
// a table in a buffer that grows to ~2x it: at 8 MiB that was ~40 MiB of
// live heap at a flush, the largest part of the bridge's memory (issue 12,
// docs/performance.md "Memory (RSS)"). 4 MiB means a flush every ~8 s at
// 500 events/s instead of every ~16 s.
const defaultMemTableMiB = 4

// DefaultWriteQueue is how many events Enqueue can hand to the writer
// before it refuses them (counted in Dropped): at 500 events/s it rides out
// a 16 s stall of the disk, and holds at most ~3 MiB of typical events.
const DefaultWriteQueue = 8192

// DefaultHandoffWait is the longest Enqueue waits for room when the writer's
// channel is full before it refuses the event: a burst is absorbed, a stall
// of the disk never holds a bus goroutine longer.
const DefaultHandoffWait = 50 * time.Millisecond

// Config configures a Store. The zero value of every field except Dir is
// usable: see the field comments for what zero means.
type Config struct {
	// Dir is the buffer directory (it holds state.json and the Badger
	// database in Dir/db). Required unless InMemory.
	Dir string
	// InMemory keeps everything in memory: nothing survives Close. For tests
	// and the demo.
	InMemory bool

	// MaxBytes caps the bytes of waiting events (key plus encoded record;
	// our own accounting). 0 means DefaultMaxBytes. Disk use can exceed it by
	// Badger's overhead: two memtable logs, the LSM levels, and acknowledged
	// data not yet reclaimed (about MaxBytes/8 at most, capped at 64 MiB;
	// while a backlog drains, reclamation waits for the drain's end unless
	// waiting and acknowledged bytes reach 2*MaxBytes or less than
	// 2*MinFree is free: maint.go).
	MaxBytes int64
	// MaxAge removes events that waited longer than this; 0 disables it.
	MaxAge time.Duration
	// OnFull is the policy when MaxBytes is reached.
	OnFull FullPolicy

	// Sync is the group-commit interval: the database is fsynced at most
	// this long after a write, so a power cut loses about this interval (see
	// the package documentation for the exact window). 0 means "always":
	// every Append (and every cursor update) is fsynced before it returns.
	Sync time.Duration

	// InFlight is the forward window: at most this many Publish results
	// outstanding per queue. 0 means DefaultInFlight.
	InFlight int
	// Rate limits Forward to this many publishes per second per queue; 0
	// means unlimited.
	Rate float64
	// ReadAhead bounds how many records all forwarders together hold read
	// and not yet acknowledged (readahead.go); 0 means DefaultReadAhead.
	// More than the uplinks take on the wire at once only waits in memory.
	ReadAhead int

	// MinFree is the free space the file system holding Dir must keep:
	// Append returns ErrDiskFull below it, acknowledgements and cursor
	// writes stop below MinFree/2, space reclamation below MinFree/4, so
	// that Badger never writes into a full file system. 0 means
	// DefaultMinFree; otherwise at least MinFreeFloor.
	MinFree int64

	// Unexported knobs, set by tests and benchmarks of this package.
	reclaim         reclaimMode   // space reclamation strategy
	reclaimEvery    time.Duration // periodic reclamation; 0 means 1 minute
	reclaimBytes    int64         // reclaim when this much was removed; 0 means MaxBytes/8 clamped
	progressEvery   time.Duration // drain progress log period; 0 means 10 s
	retryMax        time.Duration // forward back-off cap; 0 means 2 s
	diskFree        func(dir string) (int64, error)
	noDiskGuard     bool          // skip checkDisk (the guard's benchmark baseline only)
	leaseBlock      uint64        // seq lease size; 0 means 1<<16
	noBackground    bool          // do not start the maintenance goroutine (tests drive it)
	memTableSizeMiB int64         // 0 means defaultMemTableMiB
	pageOutEvery    time.Duration // page the tables out this often under a backlog (resident.go); 0 means DefaultPageOutEvery, < 0 never
	duringReclaim   func()        // tests: runs in reclaim after DropPrefix, the gate held
	ackDelay        time.Duration // longest wait of a settled cursor for the writer; 0 means DefaultAckDelay
	writeQueue      int           // events the writer's hand-over channel holds; 0 means DefaultWriteQueue
	handoffWait     time.Duration // longest wait for room in that channel; 0 means DefaultHandoffWait
	now             func() time.Time
	loadFault       func(queue string) // called as each queue is loaded at Open (fault injection)
}

// reclaimMode selects how removed events give their disk space back. Only
// reclaimDropPrefix is used in production; the others exist so that the soak
// benchmark can measure the alternatives.
type reclaimMode int

const (
	reclaimDropPrefix     reclaimMode = iota // cursor only; DropPrefix of removed blocks and empty queues
	reclaimNone                              // cursor only; nothing is ever reclaimed (baseline)
	reclaimDeletes                           // batched per-record deletes in the cursor transaction
	reclaimDeletesFlatten                    // batched deletes plus Flatten when every queue is empty
)

func (m reclaimMode) String() string {
	switch m {
	case reclaimDropPrefix:
		return "dropprefix"
	case reclaimNone:
		return "none"
	case reclaimDeletes:
		return "deletes"
	case reclaimDeletesFlatten:
		return "deletes+flatten"
	}
	return "unknown"
}

func (c *Config) setDefaults() error {
	if !c.InMemory && c.Dir == "" {
		return errors.New("buffer: dir is required unless in_memory")
	}
	if c.MaxBytes < 0 || c.MaxAge < 0 || c.Sync < 0 || c.InFlight < 0 || c.Rate < 0 || c.MinFree < 0 || c.ReadAhead < 0 {
		return errors.New("buffer: negative max_bytes, max_age, sync, in_flight, rate, min_free or read-ahead")
	}
	if c.OnFull != DropOldest && c.OnFull != DropNewest {
		return fmt.Errorf("buffer: invalid full policy %d", int(c.OnFull))
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxBytes < 2*(MaxPayload+maxRecordOverhead) {
		return fmt.Errorf("buffer: max_bytes %d is too small (minimum %d)", c.MaxBytes, 2*(MaxPayload+maxRecordOverhead))
	}
	if c.InFlight == 0 {
		c.InFlight = DefaultInFlight
	}
	if c.ReadAhead == 0 {
		c.ReadAhead = DefaultReadAhead
	}
	if c.MinFree == 0 {
		c.MinFree = DefaultMinFree
	}
	if c.MinFree < MinFreeFloor {
		return fmt.Errorf("buffer: min_free %d is too small (minimum %d)", c.MinFree, MinFreeFloor)
	}
	if c.reclaimEvery == 0 {
		c.reclaimEvery = time.Minute
	}
	if c.ackDelay == 0 {
		c.ackDelay = DefaultAckDelay
	}
	if c.writeQueue == 0 {
		c.writeQueue = DefaultWriteQueue
	}
	if c.handoffWait == 0 {
		c.handoffWait = DefaultHandoffWait
	}
	if c.reclaimBytes == 0 {
		c.reclaimBytes = min(max(c.MaxBytes/8, 4<<20), 64<<20)
	}
	if c.progressEvery == 0 {
		c.progressEvery = 10 * time.Second
	}
	if c.retryMax == 0 {
		c.retryMax = 2 * time.Second
	}
	if c.diskFree == nil {
		c.diskFree = statfsFree
	}
	if c.leaseBlock == 0 {
		c.leaseBlock = 1 << 16
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.memTableSizeMiB == 0 {
		c.memTableSizeMiB = defaultMemTableMiB
	}
	if c.pageOutEvery == 0 {
		c.pageOutEvery = DefaultPageOutEvery
	}
	return nil
}
