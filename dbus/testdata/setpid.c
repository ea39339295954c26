// setpid PID PROGRAM [ARG...]: run PROGRAM as a child whose PID is PID
// (clone3 with set_tid, which needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE
// in the PID namespace's owner), print that PID, and wait for it. The PID
// reuse tests hand a freed PID to another process with it.
#define _GNU_SOURCE
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: setpid PID PROGRAM [ARG...]\n");
		return 2;
	}
	pid_t want = (pid_t)atoi(argv[1]);
	struct clone_args args;
	memset(&args, 0, sizeof(args));
	args.exit_signal = SIGCHLD;
	args.set_tid = (uint64_t)(uintptr_t)&want;
	args.set_tid_size = 1;
	long pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid < 0) {
		perror("clone3 with set_tid");
		return 1;
	}
	if (pid == 0) {
		execv(argv[2], argv + 2);
		_exit(127);
	}
	printf("%ld\n", pid);
	fflush(stdout);
	int status;
	waitpid((pid_t)pid, &status, 0);
	return 0;
}
