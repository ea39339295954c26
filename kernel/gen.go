package kernel

// One bpf2go object, bpf/contid.c, which includes each concern's file, so
// the maps are generated once. The output is committed: `make generate`
// must reproduce it byte for byte, so only flags that keep paths and
// versions out are used.

//go:generate go tool bpf2go -cc clang -no-global-types -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" contid bpf/contid.c
