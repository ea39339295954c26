package p2p

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

// rowsReply is a ListContainers reply as handle builds it.
func rowsReply(rows []client.ContainerRow) *godbus.Message {
	return &godbus.Message{Type: godbus.TypeMethodReply, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldReplySerial: godbus.MakeVariant(uint32(7)),
		godbus.FieldDestination: godbus.MakeVariant(":1.42"),
		godbus.FieldSender:      godbus.MakeVariant(client.BusName),
		godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf(rows)),
	}, Body: []any{rows}}
}

// body is the body of an encoded message: what follows the header,
// which is padded to 8 bytes.
func body(t *testing.T, msg []byte) []byte {
	t.Helper()
	fields := binary.LittleEndian.Uint32(msg[12:16])
	start := 16 + (int(fields)+7)&^7
	if want := int(binary.LittleEndian.Uint32(msg[4:8])); len(msg)-start != want {
		t.Fatalf("header says a body of %d bytes, %d follow it", want, len(msg)-start)
	}
	return msg[start:]
}

// The ListContainers body written by hand is byte for byte the one godbus
// writes, whatever the strings' lengths do to the padding, and godbus
// decodes the whole message to the rows sent.
func TestRowsBody(t *testing.T) {
	row := func(id uint64, name, unit, cgroup string, parent uint64) client.ContainerRow {
		return client.ContainerRow{ID: id, Name: name, Unit: unit, Cgroup: cgroup, Parent: parent, Path: client.ContainerPath(contid.ID(id))}
	}
	var lengths, many []client.ContainerRow
	// Every string length modulo 8 in every field.
	for i := range 8 {
		s := strings.Repeat("x", i)
		lengths = append(lengths, row(uint64(i+1), s, s+"u", s+"/c", uint64(i)))
	}
	for i := range 3000 {
		many = append(many, row(uint64(i+1)<<20|uint64(i), fmt.Sprintf("name-%d", i), fmt.Sprintf("u%d.scope", i%7), fmt.Sprintf("/machine.slice/m%d.scope", i), uint64(i/3)))
	}
	for _, tt := range []struct {
		name string
		rows []client.ContainerRow
	}{
		{"no containers", []client.ContainerRow{}},
		{"one, with empty strings", []client.ContainerRow{row(1, "", "", "", 0)}},
		{"the largest IDs", []client.ContainerRow{row(^uint64(0), "a", "b.scope", "/c", ^uint64(0)-1)}},
		{"every padding", lengths},
		{"UTF-8 names", []client.ContainerRow{row(5, "conteneur-é", "ünit.scope", "/machine.slice/日本.scope", 0)}},
		{"3,000 containers", many},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var want bytes.Buffer
			if err := rowsReply(tt.rows).EncodeTo(&want, binary.LittleEndian); err != nil {
				t.Fatal(err)
			}
			got, err := encodeMessage(rowsReply(tt.rows))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body(t, got), body(t, want.Bytes())) {
				t.Fatalf("body differs from godbus's:\n got %x\nwant %x", body(t, got), body(t, want.Bytes()))
			}
			if limit := len(got) - len(body(t, got)) + rowsSize(tt.rows); len(got) > limit {
				t.Errorf("message of %d bytes, more than the %d rowsSize allowed for", len(got), limit)
			}
			msg, err := godbus.DecodeMessage(bytes.NewReader(got))
			if err != nil {
				t.Fatalf("godbus cannot decode it: %v", err)
			}
			var decoded []client.ContainerRow
			if err := godbus.Store(msg.Body, &decoded); err != nil {
				t.Fatal(err)
			}
			if len(tt.rows) == 0 && len(decoded) == 0 {
				return
			}
			if !reflect.DeepEqual(decoded, tt.rows) {
				t.Errorf("decoded %d rows that differ from the %d sent", len(decoded), len(tt.rows))
			}
			for _, f := range []godbus.HeaderField{godbus.FieldReplySerial, godbus.FieldDestination, godbus.FieldSender, godbus.FieldSignature} {
				if g, w := msg.Headers[f], rowsReply(tt.rows).Headers[f]; g.String() != w.String() {
					t.Errorf("header field %d is %s, want %s", f, g, w)
				}
			}
		})
	}
}

// BenchmarkListReply is the cost of a ListContainers reply of 4,000
// containers: godbus's reflection against the body written by hand.
func BenchmarkListReply(b *testing.B) {
	rows := make([]client.ContainerRow, 4000)
	for i := range rows {
		rows[i] = client.ContainerRow{ID: uint64(i + 1), Cgroup: fmt.Sprintf("/contid-bench-stall/c%05d", i), Path: client.ContainerPath(contid.ID(i + 1))}
	}
	for _, bc := range []struct {
		name   string
		encode func(*godbus.Message) error
	}{
		{"godbus", func(m *godbus.Message) error {
			var buf bytes.Buffer
			return m.EncodeTo(&buf, binary.LittleEndian)
		}},
		{"by-hand", func(m *godbus.Message) error { _, err := encodeMessage(m); return err }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.encode(rowsReply(rows)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
