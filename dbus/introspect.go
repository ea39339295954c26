package dbus

import (
	"encoding/xml"
	"fmt"
	"strings"

	godbus "github.com/godbus/dbus/v5"
)

const introspectHeader = `<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
`

const standardInterfaces = `
 <interface name="org.freedesktop.DBus.Peer">
  <method name="Ping"/>
  <method name="GetMachineId"><arg type="s" name="machine_uuid" direction="out"/></method>
 </interface>
 <interface name="org.freedesktop.DBus.Introspectable">
  <method name="Introspect"><arg name="xml_data" type="s" direction="out"/></method>
 </interface>
 <interface name="org.freedesktop.DBus.Properties">
  <method name="Get">
   <arg name="interface_name" direction="in" type="s"/>
   <arg name="property_name" direction="in" type="s"/>
   <arg name="value" direction="out" type="v"/>
  </method>
  <method name="GetAll">
   <arg name="interface_name" direction="in" type="s"/>
   <arg name="props" direction="out" type="a{sv}"/>
  </method>
  <method name="Set">
   <arg name="interface_name" direction="in" type="s"/>
   <arg name="property_name" direction="in" type="s"/>
   <arg name="value" direction="in" type="v"/>
  </method>
  <signal name="PropertiesChanged">
   <arg type="s" name="interface_name"/>
   <arg type="a{sv}" name="changed_properties"/>
   <arg type="as" name="invalidated_properties"/>
  </signal>
 </interface>`

// ManagerIntrospection is the org.contid1.Manager interface,
// docs/DESIGN.md, as introspection data: written from the table in
// interfaces.go.
var ManagerIntrospection = managerInterface.introspection()

// ContainerIntrospection is the org.contid1.Container interface.
var ContainerIntrospection = containerInterface.introspection()

// introspection writes the interface's element in the layout of
// standardInterfaces, to be appended to a node.
func (in *iface) introspection() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n <interface name=\"%s\">", xmlAttr(in.Name))
	writeArgs := func(args []arg, direction string) {
		for _, a := range args {
			fmt.Fprintf(&b, "\n   <arg type=\"%s\" name=\"%s\"", xmlAttr(a.Type), xmlAttr(a.Name))
			if direction != "" {
				fmt.Fprintf(&b, " direction=\"%s\"", direction)
			}
			b.WriteString("/>")
		}
	}
	for _, m := range in.Methods {
		fmt.Fprintf(&b, "\n  <method name=\"%s\"", xmlAttr(m.Name))
		if len(m.In)+len(m.Out) == 0 {
			b.WriteString("/>")
			continue
		}
		b.WriteString(">")
		writeArgs(m.In, "in")
		writeArgs(m.Out, "out")
		b.WriteString("\n  </method>")
	}
	for _, p := range in.Properties {
		fmt.Fprintf(&b, "\n  <property name=\"%s\" type=\"%s\" access=\"read\"", xmlAttr(p.Name), xmlAttr(p.Type))
		if p.Emits == emitsTrue {
			b.WriteString("/>")
			continue
		}
		fmt.Fprintf(&b, ">\n   <annotation name=\"%s\" value=\"%s\"/>\n  </property>", emitsChangedSignal, xmlAttr(string(p.Emits)))
	}
	for _, s := range in.Signals {
		fmt.Fprintf(&b, "\n  <signal name=\"%s\"", xmlAttr(s.Name))
		if len(s.Args) == 0 {
			b.WriteString("/>")
			continue
		}
		b.WriteString(">")
		writeArgs(s.Args, "")
		b.WriteString("\n  </signal>")
	}
	b.WriteString("\n </interface>")
	return b.String()
}

// xmlAttr escapes s for an attribute value in double quotes.
func xmlAttr(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return b.String()
}

func (m *Manager) introspect(p godbus.ObjectPath, k objKind) string {
	var b strings.Builder
	b.WriteString(introspectHeader)
	b.WriteString("<node>")
	b.WriteString(standardInterfaces)
	switch {
	case k == objManager:
		b.WriteString(ManagerIntrospection)
		b.WriteString("\n <node name=\"container\"/>")
	case k == objContainer:
		b.WriteString(ContainerIntrospection)
	case p == "/":
		b.WriteString("\n <node name=\"org\"/>")
	case p == "/org":
		b.WriteString("\n <node name=\"contid1\"/>")
	case p == "/org/contid1/container":
		for _, r := range m.cfg.Registry.Rows() {
			fmt.Fprintf(&b, "\n <node name=\"%d\"/>", r.ID)
		}
	}
	b.WriteString("\n</node>\n")
	return b.String()
}
