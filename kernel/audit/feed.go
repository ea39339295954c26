package audit

import (
	"fmt"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"
	"github.com/elastic/go-libaudit/v2/auparse"
)

// Feed runs records that did not come from the socket (a saved log, a
// test) through the same reassembly, parsing and attribution as Reader,
// delivering to a Handler.
type Feed struct {
	r *Reader
}

// NewFeed attributes with attr (nil: nothing is attributed) and delivers
// to h.
func NewFeed(attr Attributor, h Handler) (*Feed, error) {
	// A feed's records are all there: an event ends with its records or
	// at Flush, never because the clock ran on while a slow (or loaded)
	// caller pushed them.
	cfg := Config{ReassemblyTimeout: 24 * time.Hour}
	cfg.setDefaults()
	r := &Reader{cfg: cfg, attr: attr, handler: h}
	reasm, err := libaudit.NewReassembler(cfg.MaxInFlight, cfg.ReassemblyTimeout, (*stream)(r))
	if err != nil {
		return nil, err
	}
	r.reasm = reasm
	return &Feed{r: r}, nil
}

// Push adds one record, text as the kernel sends it:
// "audit(<sec>.<ms>:<serial>): key=value ...".
func (f *Feed) Push(typ auparse.AuditMessageType, text string) error {
	at, serial, body, err := parseHeader([]byte(text))
	if err != nil {
		return fmt.Errorf("record %q: %w", text, err)
	}
	f.r.stats.records.Add(1)
	f.r.reasm.PushMessage(&auparse.AuditMessage{
		RecordType: typ, Timestamp: at, Sequence: serial, RawData: text, Payload: body,
	})
	return nil
}

// Flush delivers every event still in reassembly; the feed is done after.
func (f *Feed) Flush() { _ = f.r.reasm.Close() }

// Stats are the counters of the records pushed so far.
func (f *Feed) Stats() ReaderStats { return f.r.Stats() }
