package kernel

// One bpf2go object per concern. All of them declare the same maps
// (bpf/contid.h); the loader creates each map once and hands it to every
// object. The output is committed: `make generate` must reproduce it byte
// for byte, so only flags that keep paths and versions out are used.

//go:generate go tool bpf2go -cc clang -no-global-types -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" fork bpf/fork.c
//go:generate go tool bpf2go -cc clang -no-global-types -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" exit bpf/exit.c
//go:generate go tool bpf2go -cc clang -no-global-types -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" join bpf/join.c
//go:generate go tool bpf2go -cc clang -no-global-types -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" autotag bpf/autotag.c
//go:generate go tool bpf2go -cc clang -no-global-types -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" tagIter bpf/tagiter.c
//go:generate go tool bpf2go -cc clang -no-global-types -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" forkLSM bpf/forklsm.c
//go:generate go tool bpf2go -cc clang -no-global-types -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" guard bpf/guard.c
