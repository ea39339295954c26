// Command contid-pipeline runs contid's audit pipeline alone, the same
// library code contidd runs: the multicast reader of kernel/audit with
// attribution by the kernel layer's pinned maps, feeding journal's
// forwarder and native writer. `make bench` uses it to measure the
// pipeline's CPU cost when the contidd under test does not run the
// pipeline itself, so the figure is never missing for want of wiring.
//
// It opens the pins of an already loaded kernel layer (-pin-dir), writes
// to -journal-socket, and on SIGTERM prints its counters as key=value.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/contid/contid/journal"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/kernel/audit"
)

func main() {
	pinDir := flag.String("pin-dir", "", "bpffs pin directory of a loaded kernel layer")
	socket := flag.String("journal-socket", "", "journald native socket (default /run/systemd/journal/socket)")
	flag.Parse()
	if *pinDir == "" {
		fmt.Fprintln(os.Stderr, "contid-pipeline: -pin-dir is required")
		os.Exit(2)
	}
	if err := run(*pinDir, *socket); err != nil {
		fmt.Fprintln(os.Stderr, "contid-pipeline:", err)
		os.Exit(1)
	}
}

func run(pinDir, socket string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	bpf, err := kernel.Load(kernel.Options{PinDir: pinDir, Mode: kernel.ModeTracking})
	if err != nil {
		return err
	}
	defer bpf.Close()
	w, err := journal.NewWriter(socket)
	if err != nil {
		return err
	}
	defer w.Close()
	fwd := journal.NewForwarder(w, nil, journal.Config{})
	r, err := audit.NewReader(audit.Config{}, bpf)
	if err != nil {
		return err
	}
	defer r.Close()
	fmt.Println("READY")

	err = r.Run(ctx, fwd)
	fwd.Flush()
	fs, rs := fwd.Stats(), r.Stats()
	fmt.Printf("written=%d lost=%d lost_kernel=%d lost_reader=%d write_failed=%d untagged=%d events=%d tagged=%d rcvbuf=%d\n",
		fs.Written, fs.Lost, fs.LostKernel, fs.LostReader, fs.WriteFailed, fs.Untagged, rs.Events, rs.Tagged, rs.ReceiveBytes)
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
