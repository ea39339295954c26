package kernel

// One bpf2go object, bpf/contid.c, which includes each concern's file, so
// the maps are generated once. The output is committed: `make generate`
// must reproduce it byte for byte, so only flags that keep paths and
// versions out are used.
//
// Go takes its record layouts and shared constants from here, never from
// a copy: the maps' key and value types come with the object, and -type
// names the rest (the ring buffer and iterator records, and the enums of
// bpf/contid.h).

//go:generate go tool bpf2go -cc clang -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3" -type event -type iter_record -type pid_record -type event_kind -type denied_op -type iter_mode -type iter_result -type protect_kind -type allow_bit -type contid_flag -type autotag_scope contid bpf/contid.c
