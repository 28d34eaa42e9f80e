/* 16 threads, each with its own TID, TLS value, signal mask, robust list and rseq area:
 * ten count in a loop with short sleeps, three wait on a condition variable, one waits in
 * a raw futex, one sleeps in nanosleep, one counts on a sigaltstack of its own. One thread
 * has a private signal pending (blocked in it only). After SIGTERM main checks that the
 * counters advance again, wakes everyone, and each thread checks its own state before
 * main joins it (join itself needs the kernel's clear-tid write at thread exit). */
#include "zoo.h"
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <time.h>

#define NTHREADS 16
#define NCOUNT 10
#define COND_FIRST 10
#define COND_LAST 12
#define FUTEX_T 13
#define SLEEP_T 14
#define ALT_T 15
#define PENDING_T 3
#define SS_LEN (64 * 1024)

enum kind { COUNTER, CONDWAIT, FUTEXWAIT, SLEEPER, ALTSTACK };

struct worker {
	pthread_t th;
	int idx;
	enum kind kind;
	pid_t tid;		 /* gettid() at start */
	void *robust_head;	 /* get_robust_list() at start */
	volatile uint64_t count; /* advanced by counters */
	volatile int failed;
	volatile int done;
	char why[160];
};

static struct worker w[NTHREADS];
static __thread uint64_t tls_value = 0x5eed;
static volatile int stop;
static volatile int corrupt_now;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int cond_go; /* under mu */
static uint32_t futex_word;
static pthread_barrier_t started;
static __thread volatile uintptr_t handler_sp;
static __thread volatile int handler_ran;

static void on_usr1(int sig)
{
	int local;

	(void)sig;
	handler_sp = (uintptr_t)&local;
	handler_ran++;
}

static void on_usr2(int sig)
{
	(void)sig;
}

static uint64_t tls_expect(int i)
{
	return 0x7100000000000000ULL | ((uint64_t)i << 32) | 0xabcd;
}

/* The thread's own mask: SIGTERM (main takes it) and one real-time signal of its own. */
static void own_mask(int i, sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGRTMIN + i);
}

static void wfail(struct worker *me, const char *fmt, ...)
{
	va_list ap;

	if (me->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(me->why, sizeof(me->why), fmt, ap);
	va_end(ap);
	me->failed = 1;
}

static void tiny_sleep(void)
{
	struct timespec ts = { 0, 1000000 };

	nanosleep(&ts, NULL);
}

/* After a signal is delivered the kernel rewrites the rseq area of a registered thread. */
static int rseq_alive(void)
{
	struct rseq *rs;

	if (__rseq_size == 0)
		return 1; /* glibc did not register rseq: nothing to check */
	rs = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
	rs->cpu_id_start = 0xfffffff0u;
	raise(SIGUSR2);
	return rs->cpu_id_start < 4096;
}

static void check_self(struct worker *me)
{
	sigset_t want, have, pend;
	struct robust_list_head *head;
	size_t len;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	int s;

	if (tid != me->tid)
		wfail(me, "gettid() is %d, was %d", tid, me->tid);
	if (tls_value != tls_expect(me->idx))
		wfail(me, "TLS value %#llx, want %#llx", (unsigned long long)tls_value,
		      (unsigned long long)tls_expect(me->idx));
	own_mask(me->idx, &want);
	pthread_sigmask(SIG_SETMASK, NULL, &have);
	for (s = 1; s < 65; s++) {
		if (sigismember(&want, s) != sigismember(&have, s)) {
			wfail(me, "signal %d %s in the mask", s,
			      sigismember(&have, s) ? "unexpectedly" : "not");
			break;
		}
	}
	sigpending(&pend);
	if (sigismember(&pend, SIGRTMIN + me->idx) != (me->idx == PENDING_T))
		wfail(me, "signal %d %spending", SIGRTMIN + me->idx,
		      me->idx == PENDING_T ? "not " : "unexpectedly ");
	if (syscall(SYS_get_robust_list, 0, &head, &len) || (void *)head != me->robust_head)
		wfail(me, "robust list %p, was %p", (void *)head, me->robust_head);
	if (!rseq_alive())
		wfail(me, "rseq area not updated by the kernel (not registered?)");
}

static void *run(void *arg)
{
	struct worker *me = arg;
	struct robust_list_head *head;
	sigset_t set;
	size_t len;
	stack_t ss;
	void *alt = NULL;

	me->tid = (pid_t)syscall(SYS_gettid);
	tls_value = tls_expect(me->idx);
	if (syscall(SYS_get_robust_list, 0, &head, &len) == 0)
		me->robust_head = head;
	own_mask(me->idx, &set);
	pthread_sigmask(SIG_SETMASK, &set, NULL);
	if (me->kind == ALTSTACK) {
		alt = mmap(NULL, SS_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (alt == MAP_FAILED)
			zoo_die("mmap");
		ss.ss_sp = alt;
		ss.ss_size = SS_LEN;
		ss.ss_flags = 0;
		if (sigaltstack(&ss, NULL))
			zoo_die("sigaltstack");
	}
	pthread_barrier_wait(&started);

	switch (me->kind) {
	case COUNTER:
	case ALTSTACK:
		while (!stop) {
			me->count++;
			if (corrupt_now && me->idx == 0) {
				sigaddset(&set, SIGRTMIN + 20);
				pthread_sigmask(SIG_SETMASK, &set, NULL);
			}
			tiny_sleep();
		}
		break;
	case CONDWAIT:
		pthread_mutex_lock(&mu);
		while (!cond_go)
			pthread_cond_wait(&cv, &mu);
		pthread_mutex_unlock(&mu);
		break;
	case FUTEXWAIT:
		while (__atomic_load_n(&futex_word, __ATOMIC_ACQUIRE) == 0)
			syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
		break;
	case SLEEPER:
		while (!stop) {
			struct timespec ts = { 100000, 0 };

			nanosleep(&ts, NULL); /* SIGUSR2 from main ends it */
		}
		break;
	}
	check_self(me);
	if (me->kind == ALTSTACK) {
		stack_t got;

		if (sigaltstack(NULL, &got) || got.ss_sp != alt || got.ss_size != SS_LEN ||
		    got.ss_flags != 0)
			wfail(me, "sigaltstack %p+%zu flags %#x, want %p+%d", got.ss_sp, got.ss_size,
			      got.ss_flags, alt, SS_LEN);
		handler_ran = 0;
		raise(SIGUSR1);
		if (!handler_ran || handler_sp <= (uintptr_t)alt ||
		    handler_sp >= (uintptr_t)alt + SS_LEN)
			wfail(me, "SIGUSR1 handler ran at %#lx, outside the alternate stack %p",
			      (unsigned long)handler_sp, alt);
	}
	me->done = 1;
	return NULL;
}

/* Waits (bounded) until every counting thread went past `snap`. */
static void counters_advance(const uint64_t *snap)
{
	int i, spins;

	for (i = 0; i < NTHREADS; i++) {
		if (w[i].kind != COUNTER && w[i].kind != ALTSTACK)
			continue;
		for (spins = 0; w[i].count <= snap[i] && spins < 10000; spins++)
			tiny_sleep();
		ZOO_CHECK(w[i].count > snap[i], "thread %d (tid %d) counter stuck at %llu", i,
			  w[i].tid, (unsigned long long)snap[i]);
	}
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	uint64_t snap[NTHREADS];
	pid_t main_tid = (pid_t)syscall(SYS_gettid);
	int i, r;

	zoo_init(argc, argv);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sa.sa_flags = 0;
	sigaction(SIGUSR2, &sa, NULL);
	tls_value = 0x3a1;

	pthread_barrier_init(&started, NULL, NTHREADS + 1);
	for (i = 0; i < NTHREADS; i++) {
		w[i].idx = i;
		w[i].kind = i < NCOUNT			      ? COUNTER
			    : i <= COND_LAST && i >= COND_FIRST ? CONDWAIT
			    : i == FUTEX_T		      ? FUTEXWAIT
			    : i == SLEEP_T		      ? SLEEPER
							      : ALTSTACK;
		r = pthread_create(&w[i].th, NULL, run, &w[i]);
		if (r) {
			errno = r;
			zoo_die("pthread_create");
		}
	}
	pthread_barrier_wait(&started);
	r = pthread_kill(w[PENDING_T].th, SIGRTMIN + PENDING_T);
	if (r) {
		errno = r;
		zoo_die("pthread_kill");
	}
	/* Every thread counted a little and the waiters are (about to be) asleep. */
	for (i = 0; i < NCOUNT; i++)
		while (w[i].count < 3)
			tiny_sleep();

	zoo_ready();
	if (zoo_corrupt)
		corrupt_now = 1;
	zoo_wait();

	ZOO_CHECK((pid_t)syscall(SYS_gettid) == main_tid, "main tid %ld, was %d",
		  (long)syscall(SYS_gettid), main_tid);
	ZOO_CHECK(tls_value == 0x3a1, "main TLS value %#llx", (unsigned long long)tls_value);
	for (i = 0; i < NTHREADS; i++)
		snap[i] = w[i].count;
	counters_advance(snap);

	stop = 1;
	pthread_mutex_lock(&mu);
	cond_go = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	__atomic_store_n(&futex_word, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	/* Again until it is out: a signal just before it entered nanosleep is lost on it. */
	while (!w[SLEEP_T].done) {
		pthread_kill(w[SLEEP_T].th, SIGUSR2);
		tiny_sleep();
	}
	for (i = 0; i < NTHREADS; i++) {
		pthread_join(w[i].th, NULL);
		if (w[i].failed)
			zoo_fail("thread %d (tid %d): %s", i, w[i].tid, w[i].why);
	}
	return zoo_done();
}
