package main

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
)

func treeCommand(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "tree [ID|NAME]",
		Short: "Show how containers nest (--all: exited ones too)",
		Long: "Show the nesting of the running containers as a tree, or only the subtree of\n" +
			"one container. With --all exited containers are shown too; without it, a\n" +
			"running container whose parent exited is drawn at the top level.\n" +
			"--json prints an array of the top containers, each the object `show --json`\n" +
			"prints with a \"children\" array of the containers nested in it.",
		Args:              maxArgs(1),
		ValidArgsFunction: completeContainers(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmdTree(cmd.Context(), g, args, all)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show exited containers too")
	return cmd
}

func cmdTree(ctx context.Context, g *globals, args []string, all bool) error {
	c, err := connect(g)
	if err != nil {
		return err
	}
	defer c.Close()
	list, err := containers(ctx, c, all)
	if err != nil {
		return err
	}
	var top contid.ID
	if len(args) == 1 {
		if top, err = resolve(ctx, c, args[0]); err != nil {
			return err
		}
		// The container asked for is shown whatever its state.
		if !hasContainer(list, top) {
			ci, err := c.Container(ctx, top)
			if err != nil {
				return err
			}
			list = append(list, ci)
		}
	}
	forest := buildForest(list, top)
	g.openPager()
	if g.json != jsonOff {
		return g.printJSON(forestJSON(forest))
	}
	writeTree(g.out, forest, g.noLegend)
	return nil
}

func hasContainer(list []client.ContainerInfo, id contid.ID) bool {
	for _, ci := range list {
		if ci.ID == id {
			return true
		}
	}
	return false
}

// treeNode is a container with the containers nested directly in it.
type treeNode struct {
	ci       client.ContainerInfo
	children []*treeNode
}

// buildForest nests the containers by their parents, siblings in ID
// order. A container whose parent is not in list (it exited and is
// filtered out) is a top-level one, so no running container goes missing
// from the tree. With top set, the forest is that container's subtree.
func buildForest(list []client.ContainerInfo, top contid.ID) []*treeNode {
	nodes := make(map[contid.ID]*treeNode, len(list))
	for _, ci := range list {
		nodes[ci.ID] = &treeNode{ci: ci}
	}
	var roots []*treeNode
	for _, ci := range list {
		n := nodes[ci.ID]
		if p, ok := nodes[ci.ParentID]; ok && ci.ParentID != contid.Unset && ci.ParentID != ci.ID {
			p.children = append(p.children, n)
		} else {
			roots = append(roots, n)
		}
	}
	for _, n := range nodes {
		sortNodes(n.children)
	}
	if top != contid.Unset {
		if n, ok := nodes[top]; ok {
			return []*treeNode{n}
		}
		return nil
	}
	sortNodes(roots)
	return roots
}

func sortNodes(ns []*treeNode) {
	sort.Slice(ns, func(i, j int) bool { return ns[i].ci.ID < ns[j].ci.ID })
}

// Tree glyphs as systemd draws them (systemctl status, machinectl status).
const (
	glyphBranch = "├─"
	glyphLast   = "└─"
	glyphPipe   = "│ "
	glyphSpace  = "  "
)

// treeRow is one line of the drawn tree: the glyphs before the container.
type treeRow struct {
	prefix string
	ci     client.ContainerInfo
}

// treeRows walks the forest depth first. Top-level containers get no
// glyphs, as the units of systemctl list-dependencies' roots.
func treeRows(forest []*treeNode) []treeRow {
	var rows []treeRow
	var walk func(n *treeNode, indent, glyph string)
	walk = func(n *treeNode, indent, glyph string) {
		rows = append(rows, treeRow{indent + glyph, n.ci})
		childIndent := indent
		switch glyph {
		case glyphBranch:
			childIndent += glyphPipe
		case glyphLast:
			childIndent += glyphSpace
		}
		for i, c := range n.children {
			g := glyphBranch
			if i == len(n.children)-1 {
				g = glyphLast
			}
			walk(c, childIndent, g)
		}
	}
	for _, n := range forest {
		walk(n, "", "")
	}
	return rows
}

// writeTree prints the forest in columns, as list prints containers.
func writeTree(w io.Writer, forest []*treeNode, noLegend bool) {
	rows := treeRows(forest)
	lines := make([]string, len(rows))
	for i, r := range rows {
		lines[i] = fmt.Sprintf("%s%d\t%s\t%s\t%s", r.prefix, r.ci.ID, dash(r.ci.Name), dash(r.ci.Unit), r.ci.State)
	}
	writeContainerTable(w, noLegend, "ID\tNAME\tUNIT\tSTATE", lines)
}

// forestJSON is the forest as container objects, each with its children.
func forestJSON(forest []*treeNode) []object {
	out := make([]object, len(forest))
	for i, n := range forest {
		out[i] = append(object(containerProperties(n.ci)), property{"Children", "children", forestJSON(n.children)})
	}
	return out
}
