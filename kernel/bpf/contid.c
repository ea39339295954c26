// SPDX-License-Identifier: GPL-2.0
/*
 * contid's one eBPF object. Each concern keeps its own source file; they
 * are compiled together so the maps are declared, generated and created
 * once. The loader loads and attaches each program on its own, and only
 * the ones the mode needs (the LSM programs only in enforcing mode).
 */
#include "fork.c"
#include "exit.c"
#include "join.c"
#include "autotag.c"
#include "tagiter.c"
#include "denial.c"
#include "forklsm.c"
#include "umhelper.c"
#include "guard.c"
#include "statefs.c"
#include "oomadj.c"
#include "cgmove.c"
