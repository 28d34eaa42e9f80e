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

static void check(pid_t tid, const char *who, int policy, int prio, int nice)
{
	struct sched_param sp;
	int p = sched_getscheduler(tid), n;

	errno = 0;
	n = getpriority(PRIO_PROCESS, tid);
	ZOO_CHECK(p == policy, "%s: policy %d, want %d", who, p, policy);
	if (sched_getparam(tid, &sp) == 0)
		ZOO_CHECK(sp.sched_priority == prio, "%s: priority %d, want %d", who,
			  sp.sched_priority, prio);
	if (policy != SCHED_FIFO && policy != SCHED_IDLE)
		ZOO_CHECK(n == nice, "%s: nice %d, want %d", who, n, nice);
}

int main(int argc, char **argv)
{
	struct sched_param sp = {.sched_priority = 0};
	pthread_t th[2];
	long k;

	zoo_init(argc, argv);
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
	if (zoo_corrupt)
		setpriority(PRIO_PROCESS, 0, 2);
	zoo_wait();

	check(0, "main", SCHED_BATCH, 0, 6);
	check(tids[0], "F", SCHED_FIFO, 3, 0);
	check(tids[1], "I", SCHED_IDLE, 0, 0);
	if (write(go[1], "xx", 2) != 2)
		zoo_fail("write go: %s", strerror(errno));
	for (k = 0; k < 2; k++)
		pthread_join(th[k], NULL);
	return zoo_done();
}
