package dbus

import (
	"fmt"
	"sort"
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

// ManagerIntrospection is the org.contid1.Manager interface, docs/DESIGN.md.
const ManagerIntrospection = `
 <interface name="org.contid1.Manager">
  <method name="TagUnit">
   <arg type="s" name="unit" direction="in"/><arg type="t" name="id" direction="in"/>
   <arg type="a{sv}" name="options" direction="in"/>
   <arg type="t" name="id" direction="out"/><arg type="o" name="container" direction="out"/>
  </method>
  <method name="TagMachine">
   <arg type="s" name="machine" direction="in"/><arg type="t" name="id" direction="in"/>
   <arg type="a{sv}" name="options" direction="in"/>
   <arg type="t" name="id" direction="out"/><arg type="o" name="container" direction="out"/>
  </method>
  <method name="TagCgroup">
   <arg type="s" name="cgroup" direction="in"/><arg type="t" name="id" direction="in"/>
   <arg type="a{sv}" name="options" direction="in"/>
   <arg type="t" name="id" direction="out"/><arg type="o" name="container" direction="out"/>
  </method>
  <method name="TagProcess">
   <arg type="h" name="pidfd" direction="in"/><arg type="t" name="id" direction="in"/>
   <arg type="a{sv}" name="options" direction="in"/>
   <arg type="t" name="id" direction="out"/><arg type="o" name="container" direction="out"/>
  </method>
  <method name="TagPID">
   <arg type="u" name="pid" direction="in"/><arg type="t" name="id" direction="in"/>
   <arg type="a{sv}" name="options" direction="in"/>
   <arg type="t" name="id" direction="out"/><arg type="o" name="container" direction="out"/>
  </method>
  <method name="GetContainer">
   <arg type="t" name="id" direction="in"/><arg type="o" name="container" direction="out"/>
  </method>
  <method name="GetContainerByPID">
   <arg type="u" name="pid" direction="in"/><arg type="o" name="container" direction="out"/>
  </method>
  <method name="GetContainerByUnit">
   <arg type="s" name="unit" direction="in"/><arg type="o" name="container" direction="out"/>
  </method>
  <method name="ListContainers">
   <arg type="a(tsssto)" name="containers" direction="out"/>
  </method>
  <property name="Version" type="s" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
  <property name="Enforcement" type="s" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
  <property name="EnforcementReason" type="s" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
  <property name="Containers" type="u" access="read"/>
  <property name="EventsWritten" type="t" access="read"/>
  <property name="EventsLost" type="t" access="read"/>
  <property name="EventsAmbiguous" type="t" access="read"/>
  <property name="SignalsDropped" type="t" access="read"/>
  <property name="AuditStream" type="s" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="false"/></property>
  <property name="AuditRulesLoaded" type="u" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="false"/></property>
  <property name="AuditRulesMissing" type="as" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="false"/></property>
  <signal name="ContainerNew"><arg type="t" name="id"/><arg type="o" name="container"/></signal>
  <signal name="ContainerRemoved"><arg type="t" name="id"/><arg type="o" name="container"/></signal>
  <signal name="TamperDenied"><arg type="t" name="id"/><arg type="u" name="pid"/><arg type="s" name="operation"/></signal>
 </interface>`

// ContainerIntrospection is the org.contid1.Container interface.
const ContainerIntrospection = `
 <interface name="org.contid1.Container">
  <method name="ListProcesses"><arg type="au" name="pids" direction="out"/></method>
  <property name="Id" type="t" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
  <property name="Name" type="s" access="read"/>
  <property name="Unit" type="s" access="read"/>
  <property name="Manager" type="s" access="read"/>
  <property name="Image" type="s" access="read"/>
  <property name="ManagerID" type="s" access="read"/>
  <property name="UUID" type="s" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
  <property name="ControlGroup" type="s" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
  <property name="CgroupId" type="t" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
  <property name="ParentId" type="t" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
  <property name="Chain" type="at" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
  <property name="Depth" type="u" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
  <property name="State" type="s" access="read"/>
  <property name="CreatedUSec" type="t" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
  <property name="OwnerUID" type="u" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
  <property name="OwnerPID" type="u" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
  <property name="Flags" type="as" access="read"><annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/></property>
 </interface>`

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
		cs := m.cfg.Registry.List()
		sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
		for _, c := range cs {
			fmt.Fprintf(&b, "\n <node name=\"%d\"/>", c.ID)
		}
	}
	b.WriteString("\n</node>\n")
	return b.String()
}
