package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/contid/contid/dbus/client"
)

func monitorCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "monitor",
		Short: "Show contidd's signals as they come, until interrupted",
		Long: "Show ContainerNew, ContainerRemoved and TamperDenied as contidd sends them,\n" +
			"one line each with the time it arrived, until SIGINT or SIGTERM.\n" +
			"--json=short prints one JSON object a line.",
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Not the command's context: its deadline is for one-shot
			// commands, and monitor runs until it is told to stop.
			ctx, stop := signal.NotifyContext(context.WithoutCancel(cmd.Context()), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return cmdMonitor(ctx, g)
		},
	}
}

// errConnectionClosed: contidd or the bus went away under monitor.
var errConnectionClosed = errors.New("the connection to contidd closed")

func cmdMonitor(ctx context.Context, g *globals) error {
	c, err := connect(g)
	if err != nil {
		return err
	}
	defer c.Close()
	sigs, err := c.WatchSignals(ctx)
	if err != nil {
		return err
	}
	// On stderr, as busctl monitor says it: stdout stays the signals
	// alone, and whoever reads them knows from here on none is missed.
	if !g.noLegend {
		fmt.Fprintln(os.Stderr, "Monitoring contidd's signals. Press Ctrl+C to stop.")
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case s, ok := <-sigs:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errConnectionClosed
			}
			if err := g.printSignal(time.Now(), s); err != nil {
				return err
			}
		}
	}
}

// signalObject is a signal as JSON: the time it arrived in microseconds
// since the epoch (as journalctl's __REALTIME_TIMESTAMP), its name, and
// its arguments under the keys a container's object uses for the same
// fields (id, object).
func signalObject(at time.Time, s client.Signal) object {
	return append(object{{"Timestamp", "timestamp_usec", at.UnixMicro()}, {"Signal", "signal", s.Member}}, signalArgs(s)...)
}

func signalArgs(s client.Signal) object {
	if s.Member == client.SignalTamperDenied {
		return object{{"Id", "id", uint64(s.ID)}, {"Pid", "pid", s.PID}, {"Operation", "operation", s.Operation}}
	}
	return object{{"Id", "id", uint64(s.ID)}, {"Object", "object", string(s.Container)}}
}

// printSignal writes one signal: a line of text, or one JSON object.
func (g *globals) printSignal(at time.Time, s client.Signal) error {
	if g.json != jsonOff {
		return g.printJSON(signalObject(at, s))
	}
	line := at.Format("2006-01-02 15:04:05.000000 MST") + " " + s.Member
	for _, p := range signalArgs(s) {
		line += " " + p.key + "=" + p.text()
	}
	_, err := fmt.Fprintln(g.out, line)
	return err
}
