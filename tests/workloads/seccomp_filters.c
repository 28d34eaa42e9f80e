/*
 * seccomp filters, a chain per thread.
 *
 * P installs F1 (sysinfo fails with errno 42), then starts thread T, which adds F2 (uname
 * fails with 43) to its own chain, and forks C, which inherits F1 and adds F3 (times fails
 * with 44). After SIGTERM each checks its own: the errnos of its filters, that the others'
 * filters do not apply to it, and its filter count (Seccomp_filters in /proc/thread-self/
 * status).
 */
#include "zoo.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/times.h>
#include <sys/utsname.h>

enum {
	P_FILTER = 1, /* P: sysinfo -> 42, uname works, 1 filter */
	T_FILTERS,    /* T: sysinfo -> 42, uname -> 43, 2 filters */
	C_FILTERS,    /* C: sysinfo -> 42, times -> 44, 2 filters */
	ITEMS = C_FILTERS
};

/* Makes syscall `nr` fail with `err` in the calling thread from now on. */
static void deny(int nr, int err)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};

	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		zoo_die("seccomp(SECCOMP_SET_MODE_FILTER)");
}

/* The errno syscall `nr` fails with (0 if it succeeds). */
static int fails_with(int nr)
{
	struct sysinfo si;
	struct utsname u;
	struct tms t;
	long r;

	errno = 0;
	if (nr == SYS_sysinfo)
		r = syscall(nr, &si);
	else if (nr == SYS_uname)
		r = syscall(nr, &u);
	else
		r = syscall(nr, &t);
	return r == -1 ? errno : 0;
}

/* Seccomp_filters of the calling thread's status. */
static int filters(void)
{
	char line[256];
	int n = -1;
	FILE *f = fopen("/proc/thread-self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Seccomp_filters: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

static volatile int t_ready, t_stop;

static void *thread_main(void *arg)
{
	(void)arg;
	deny(SYS_uname, 43);
	/* T cannot know when P is ready: it breaks its item at its own ready. */
	if (ZOO_BREAK(T_FILTERS))
		deny(SYS_uname, 51);
	t_ready = 1;
	while (!t_stop)
		pause();
	if (fails_with(SYS_sysinfo) != 42 || fails_with(SYS_uname) != 43 ||
	    fails_with(SYS_times) != 0 || filters() != 2) {
		zoo_fail(T_FILTERS, "T: sysinfo %d, uname %d, times %d, %d filters",
			 fails_with(SYS_sysinfo), fails_with(SYS_uname), fails_with(SYS_times),
			 filters());
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t;
	pid_t kid;

	zoo_init(argc, argv, ITEMS);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		zoo_die("PR_SET_NO_NEW_PRIVS");
	deny(SYS_sysinfo, 42);
	zoo_wake_on(SIGURG);
	if (pthread_create(&t, NULL, thread_main, NULL))
		zoo_die("pthread_create");
	while (!t_ready)
		sched_yield();
	kid = zoo_fork_ready();
	if (kid == 0) {
		deny(SYS_times, 44);
		/* C cannot know when P is ready: it breaks its item at its own ready. */
		if (ZOO_BREAK(C_FILTERS))
			deny(SYS_times, 52);
		zoo_child_ready();
		zoo_wait();
		ZOO_CHECK(C_FILTERS,
			  fails_with(SYS_sysinfo) == 42 && fails_with(SYS_times) == 44 &&
				  fails_with(SYS_uname) == 0 && filters() == 2,
			  "C: sysinfo %d, times %d, uname %d, %d filters", fails_with(SYS_sysinfo),
			  fails_with(SYS_times), fails_with(SYS_uname), filters());
		return zoo_failures ? 1 : 0;
	}

	zoo_ready();
	if (ZOO_BREAK(P_FILTER))
		deny(SYS_sysinfo, 50);
	zoo_wait();

	if (kill(kid, SIGTERM))
		zoo_fail(0, "kill C: %s", strerror(errno));
	zoo_reap(kid, "C");
	t_stop = 1;
	pthread_kill(t, SIGURG);
	pthread_join(t, NULL);
	ZOO_CHECK(P_FILTER,
		  fails_with(SYS_sysinfo) == 42 && fails_with(SYS_uname) == 0 &&
			  fails_with(SYS_times) == 0 && filters() == 1,
		  "P: sysinfo %d, uname %d, times %d, %d filters", fails_with(SYS_sysinfo),
		  fails_with(SYS_uname), fails_with(SYS_times), filters());
	return zoo_done();
}
