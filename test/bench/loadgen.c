/*
 * loadgen: the process-creation load for `make bench`.
 *
 * It is C, not Go, because the figure we want is the cost of a real
 * fork()+execve()+waitpid() (copying the address space, as a shell does);
 * Go's os/exec uses vfork-style clones and its runtime adds noise of its
 * own. The bench harness starts it inside the test cgroup, so every child
 * it creates passes through contid's fork and exit programs.
 *
 *   loadgen loop N PROG [ARG]   run PROG N times back to back; prints
 *                               "ns=<elapsed> n=<N> cpu_ns=<user+sys of
 *                               the loop and its children>"
 *   loadgen rate R SECS WORKERS PROG [ARG]
 *                               start PROG R times a second for SECS,
 *                               shared among WORKERS forking processes,
 *                               on an absolute schedule so a slow child
 *                               does not lower the offered rate silently;
 *                               prints "offered=<n> done=<n> ns=<elapsed>
 *                               late=<n>" where late counts starts more
 *                               than 50 ms behind schedule; it stops
 *                               starting new ones at 1.25 SECS + 1 s, so
 *                               offered < R*SECS says the machine could
 *                               not keep up
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t tv_ns(struct timeval tv)
{
	return (uint64_t)tv.tv_sec * 1000000000ull + (uint64_t)tv.tv_usec * 1000ull;
}

static pid_t spawn(char **argv)
{
	pid_t pid = fork();
	if (pid == 0) {
		execve(argv[0], argv, environ);
		_exit(127);
	}
	return pid;
}

static int reap(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Reap whatever has finished without blocking; returns how many did. */
static long reap_ready(void)
{
	long n = 0;
	int status;
	while (waitpid(-1, &status, WNOHANG) > 0)
		n++;
	return n;
}

static int loop(long n, char **argv)
{
	uint64_t start = now_ns();
	for (long i = 0; i < n; i++) {
		pid_t pid = spawn(argv);
		if (pid < 0 || reap(pid) < 0) {
			fprintf(stderr, "loadgen: child %ld failed: %s\n", i, strerror(errno));
			return 1;
		}
	}
	uint64_t elapsed = now_ns() - start;
	/*
	 * CPU time of the loop and its children (contid's fork and exit
	 * programs run in their context): less sensitive than wall time to
	 * other work on the machine.
	 */
	struct rusage self, kids;
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	uint64_t cpu = tv_ns(self.ru_utime) + tv_ns(self.ru_stime) + tv_ns(kids.ru_utime) + tv_ns(kids.ru_stime);
	printf("ns=%llu n=%ld cpu_ns=%llu\n", (unsigned long long)elapsed, n, (unsigned long long)cpu);
	return 0;
}

struct worker_result {
	long started, done, late;
};

/*
 * One worker's share of the schedule: starts at offset, every interval.
 * Several workers keep the offered rate when a single fork()+exec() takes
 * longer than the interval (fork is slow on small VMs).
 */
static void rate_worker(uint64_t start, uint64_t offset, uint64_t interval, long total,
			uint64_t deadline, char **argv, struct worker_result *res)
{
	for (long i = 0; i < total; i++) {
		uint64_t due = start + offset + (uint64_t)i * interval;
		uint64_t t = now_ns();
		/* A machine too slow for the rate must not stretch the run. */
		if (t > deadline)
			break;
		if (t < due) {
			struct timespec ts = { .tv_sec = (time_t)(due / 1000000000ull),
					       .tv_nsec = (long)(due % 1000000000ull) };
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
				;
		} else if (t - due > 50000000ull) {
			res->late++;
		}
		if (spawn(argv) < 0) {
			fprintf(stderr, "loadgen: fork: %s\n", strerror(errno));
			break;
		}
		res->started++;
		res->done += reap_ready();
	}
	while (res->done < res->started) {
		int status;
		if (wait(&status) < 0)
			break;
		res->done++;
	}
}

static int rate(long r, double secs, long workers, char **argv)
{
	if (workers < 1)
		workers = 1;
	long total = (long)(r * secs) / workers;
	uint64_t interval = 1000000000ull * (uint64_t)workers / (uint64_t)r;
	struct worker_result *res = mmap(NULL, sizeof(*res) * (size_t)workers, PROT_READ | PROT_WRITE,
					 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (res == MAP_FAILED) {
		perror("loadgen: mmap");
		return 1;
	}
	memset(res, 0, sizeof(*res) * (size_t)workers);
	uint64_t start = now_ns() + 20000000ull; /* let every worker get going */
	uint64_t deadline = start + (uint64_t)(secs * 1.25e9) + 1000000000ull;
	for (long w = 0; w < workers; w++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("loadgen: fork worker");
			return 1;
		}
		if (pid == 0) {
			rate_worker(start, (uint64_t)w * interval / (uint64_t)workers, interval, total,
				    deadline, argv, &res[w]);
			_exit(0);
		}
	}
	for (long w = 0; w < workers; w++) {
		int status;
		if (wait(&status) < 0) {
			perror("loadgen: wait");
			return 1;
		}
	}
	uint64_t elapsed = now_ns() - start;
	long started = 0, done = 0, late = 0;
	for (long w = 0; w < workers; w++) {
		started += res[w].started;
		done += res[w].done;
		late += res[w].late;
	}
	printf("offered=%ld done=%ld ns=%llu late=%ld\n", started, done, (unsigned long long)elapsed, late);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "loop") == 0)
		return loop(atol(argv[2]), argv + 3);
	if (argc >= 6 && strcmp(argv[1], "rate") == 0 && atol(argv[2]) > 0)
		return rate(atol(argv[2]), atof(argv[3]), atol(argv[4]), argv + 5);
	fprintf(stderr, "usage: loadgen loop N PROG [ARG...] | loadgen rate R SECS WORKERS PROG [ARG...]\n");
	return 2;
}
