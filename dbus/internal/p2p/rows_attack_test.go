package p2p

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

// randString is valid UTF-8 of up to max bytes drawn from ASCII, two-,
// three- and four-byte characters and the noncharacters U+FFFE and
// U+FDD0, which Go and godbus take as valid UTF-8.
func randString(rng *rand.Rand, max int) string {
	runes := []rune{'a', '/', '.', '-', 'é', 'ß', '日', '本', '😀', '\U0010FFFF', '\uFFFE', '\uFDD0', '\u00a0'}
	var b strings.Builder
	n := rng.IntN(max + 1)
	for b.Len() < n {
		r := runes[rng.IntN(len(runes))]
		if b.Len()+utf8.RuneLen(r) > n {
			r = 'x'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Random rows, with strings of every length up to those the validators
// let in (255-byte names and units, 4096-byte cgroup paths), are written
// byte for byte as godbus writes them, and godbus reads them back.
func TestRowsBodyRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 300 {
		rows := make([]client.ContainerRow, rng.IntN(40))
		for i := range rows {
			id := rng.Uint64()
			if id == 0 {
				id = 1
			}
			cgMax := 64
			if rng.IntN(10) == 0 {
				cgMax = 4096
			}
			rows[i] = client.ContainerRow{ID: id, Name: randString(rng, 255), Unit: randString(rng, 255),
				Cgroup: randString(rng, cgMax), Parent: rng.Uint64(), Path: client.ContainerPath(contid.ID(id))}
		}
		var want bytes.Buffer
		if err := rowsReply(rows).EncodeTo(&want, binary.LittleEndian); err != nil {
			t.Fatal(err)
		}
		got, err := encodeMessage(rowsReply(rows))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body(t, got), body(t, want.Bytes())) {
			t.Fatalf("iteration %d: body differs from godbus's", iter)
		}
		msg, err := godbus.DecodeMessage(bytes.NewReader(got))
		if err != nil {
			t.Fatalf("iteration %d: godbus cannot decode it: %v", iter, err)
		}
		var decoded []client.ContainerRow
		if err := godbus.Store(msg.Body, &decoded); err != nil {
			t.Fatal(err)
		}
		if len(rows) > 0 && !reflect.DeepEqual(decoded, rows) {
			t.Fatalf("iteration %d: decoded rows differ", iter)
		}
	}
}

// Whatever godbus refuses to encode, the hand-written encoder refuses
// too: it must never send a message that clients (godbus, sd-bus) reject
// as malformed. godbus refuses invalid UTF-8, a NUL in a string, an
// invalid object path and an array beyond the specification's 64 MiB.
func TestRowsRefuseWhatGodbusRefuses(t *testing.T) {
	row := func(name, unit, cgroup string, path godbus.ObjectPath) client.ContainerRow {
		return client.ContainerRow{ID: 5, Name: name, Unit: unit, Cgroup: cgroup, Path: path}
	}
	ok := client.ContainerPath(5)
	big := make([]client.ContainerRow, 17000)
	for i := range big {
		big[i] = row("n", "u", "/"+strings.Repeat("c", 4000), client.ContainerPath(contid.ID(i+1)))
	}
	for _, tt := range []struct {
		name string
		rows []client.ContainerRow
	}{
		{"invalid UTF-8 in a cgroup path", []client.ContainerRow{row("n", "u", "/machine.slice/\xff.scope", ok)}},
		{"invalid UTF-8 in a name", []client.ContainerRow{row("\xc3", "u", "/c", ok)}},
		{"NUL in a cgroup path", []client.ContainerRow{row("n", "u", "/a\x00b", ok)}},
		{"NUL in a unit", []client.ContainerRow{row("n", "u\x00", "/c", ok)}},
		{"invalid object path", []client.ContainerRow{row("n", "u", "/c", "/org/contid1/container/")}},
		{"array over 64 MiB", big},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := rowsReply(tt.rows).EncodeTo(&bytes.Buffer{}, binary.LittleEndian); err == nil {
				t.Fatal("control: godbus encodes it")
			}
			b, err := encodeMessage(rowsReply(tt.rows))
			if err == nil {
				_, derr := godbus.DecodeMessage(bytes.NewReader(b))
				t.Errorf("encodeMessage wrote a %d-byte message that godbus refuses to write (godbus decoding it: %v)", len(b), derr)
			}
		})
	}
}

// validObjectPath agrees with godbus's ObjectPath.IsValid.
func TestValidObjectPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := "/a_Z9.-é"
	for _, s := range []string{"", "/", "//", "/a", "/a/", "/a//b", "a/b", "/org/contid1/container/5", "/a-b", "/é"} {
		if got, want := validObjectPath(s), godbus.ObjectPath(s).IsValid(); got != want {
			t.Errorf("validObjectPath(%q) = %v, godbus says %v", s, got, want)
		}
	}
	for range 100000 {
		b := make([]byte, rng.IntN(8))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if got, want := validObjectPath(string(b)), godbus.ObjectPath(b).IsValid(); got != want {
			t.Fatalf("validObjectPath(%q) = %v, godbus says %v", b, got, want)
		}
	}
}
