package badger

import (
	"fmt"
	"testing"
	"time"
)

// TestStaticThresholdSendsNoSizes: with VLogPercentile 0 (a static value
// threshold, the default) writes hand nothing to the threshold's listener
// (fieldbridge, fifth patch). The listener is stopped first, so every size
// list sent stays in its channel and is counted; upstream's writes fill it
// (and would block once it holds 1 000).
func TestStaticThresholdSendsNoSizes(t *testing.T) {
	db, err := Open(DefaultOptions(t.TempDir()).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.threshold.close()
	const txns = 200
	for i := range txns {
		err := db.Update(func(txn *Txn) error {
			return txn.Set([]byte(fmt.Sprintf("key-%04d", i)), []byte("value"))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(db.threshold.valueCh); n != 0 {
		t.Errorf("%d size lists sent to the threshold's listener for %d transactions, want 0", n, txns)
	}
	if got := db.valueThreshold(); got != db.opt.ValueThreshold {
		t.Errorf("value threshold %d, want the static %d", got, db.opt.ValueThreshold)
	}

	// With a percentile the sizes still go to the listener.
	dyn, err := Open(DefaultOptions(t.TempDir()).WithLogger(nil).WithVLogPercentile(0.9))
	if err != nil {
		t.Fatal(err)
	}
	defer dyn.Close()
	dyn.threshold.close()
	if err := dyn.Update(func(txn *Txn) error { return txn.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(dyn.threshold.valueCh) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if len(dyn.threshold.valueCh) == 0 {
		t.Error("with VLogPercentile 0.9 no sizes reached the listener")
	}
}
