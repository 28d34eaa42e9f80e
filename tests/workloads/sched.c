/*
 * Scheduling state per thread: the main thread runs SCHED_BATCH at nice 6, thread F
 * SCHED_FIFO at priority 3 (blocked, so it takes no CPU), thread I SCHED_IDLE. After
 * SIGTERM the main thread checks the policy, priority and nice value of each thread by
 * its TID (they are per thread), then lets the threads go.
 */
#include "zoo.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>

enum {
	MAIN_POLICY = 1, /* SCHED_BATCH, priority 0 */
	MAIN_NICE,       /* 6 */
	F_POLICY,        /* SCHED_FIFO */
	F_PRIORITY,      /* 3 */
	I_POLICY,        /* SCHED_IDLE, priority 0 */
	ITEMS = I_POLICY
};

static pid_t tids[2];
static int go[2];
static pthread_barrier_t ready;

static void *thread_main(void *arg)
{
	long k = (long)arg;
	struct sched_param sp = {.sched_priority = k == 0 ? 3 : 0};
	char c;

	tids[k] = (pid_t)syscall(SYS_gettid);
	if (sched_setscheduler(0, k == 0 ? SCHED_FIFO : SCHED_IDLE, &sp))
		zoo_die("sched_setscheduler in a thread");
	pthread_barrier_wait(&ready);
	if (read(go[0], &c, 1) < 0)
		zoo_die("read go");
	return NULL;
}

/* The policy and priority of `tid` (checked as `policy_item`), its nice value unless it
 * has none (checked as `nice_item`). */
static void check(pid_t tid, const char *who, int policy, int prio, int policy_item,
		  int prio_item, int nice, int nice_item)
{
	struct sched_param sp = {.sched_priority = -1};
	int p = sched_getscheduler(tid), n;

	errno = 0;
	n = getpriority(PRIO_PROCESS, tid);
	sched_getparam(tid, &sp);
	ZOO_CHECK(policy_item, p == policy, "%s: policy %d, want %d", who, p, policy);
	ZOO_CHECK(prio_item, sp.sched_priority == prio, "%s: priority %d, want %d", who,
		  sp.sched_priority, prio);
	if (nice_item)
		ZOO_CHECK(nice_item, n == nice, "%s: nice %d, want %d", who, n, nice);
}

int main(int argc, char **argv)
{
	struct sched_param sp = {.sched_priority = 0};
	pthread_t th[2];
	long k;

	zoo_init(argc, argv, ITEMS);
	if (pipe(go))
		zoo_die("pipe");
	pthread_barrier_init(&ready, NULL, 3);
	for (k = 0; k < 2; k++)
		if (pthread_create(&th[k], NULL, thread_main, (void *)k))
			zoo_die("pthread_create");
	pthread_barrier_wait(&ready);
	if (sched_setscheduler(0, SCHED_BATCH, &sp) || setpriority(PRIO_PROCESS, 0, 6))
		zoo_die("main thread scheduling");
	zoo_ready();
	if (ZOO_BREAK(MAIN_POLICY))
		sched_setscheduler(0, SCHED_OTHER, &sp);
	if (ZOO_BREAK(MAIN_NICE))
		setpriority(PRIO_PROCESS, 0, 7);
	if (ZOO_BREAK(F_POLICY)) {
		sp.sched_priority = 3;
		sched_setscheduler(tids[0], SCHED_RR, &sp);
	}
	if (ZOO_BREAK(F_PRIORITY)) {
		sp.sched_priority = 4;
		sched_setscheduler(tids[0], SCHED_FIFO, &sp);
	}
	if (ZOO_BREAK(I_POLICY))
		sched_setscheduler(tids[1], SCHED_BATCH, &sp);
	zoo_wait();

	/* A nice value means something under SCHED_OTHER and SCHED_BATCH only: the main
	 * thread's is checked. */
	check(0, "main", SCHED_BATCH, 0, MAIN_POLICY, MAIN_POLICY, 6, MAIN_NICE);
	check(tids[0], "F", SCHED_FIFO, 3, F_POLICY, F_PRIORITY, 0, 0);
	check(tids[1], "I", SCHED_IDLE, 0, I_POLICY, I_POLICY, 0, 0);
	if (write(go[1], "xx", 2) != 2)
		zoo_fail(0, "write go: %s", strerror(errno));
	for (k = 0; k < 2; k++)
		pthread_join(th[k], NULL);
	return zoo_done();
}
