/* 16 threads, each with its own TID, TLS value, signal mask, robust list and rseq area:
 * ten count in a loop with short sleeps, three wait on a condition variable, one waits in
 * a raw futex, one sleeps in nanosleep, one counts on a sigaltstack of its own. One thread
 * has a private signal pending (blocked in it only). After SIGTERM main checks that the
 * counters advance again, wakes everyone, and each thread checks its own state before
 * main joins it (join itself needs the kernel's clear-tid write at thread exit). A thread
 * breaks an item of its own in its loop once main says so (a counting thread notices
 * within a loop turn, and main waits for every counter to advance before it wakes the
 * threads). No thread can change its TID: checked, but no item. */
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

/* The counting threads that break an item of theirs. */
#define MASK_T 0
#define TLS_T 1
#define ROBUST_T 2
#define RSEQ_T 4
#define STUCK_T 5

enum {
	MAIN_TLS = 1,
	COUNTING,    /* every counting thread advances after SIGTERM */
	TLS,         /* each thread's TLS value */
	MASK,        /* each thread's signal mask */
	PENDING,     /* the signal pending in one thread only */
	ROBUST,      /* each thread's robust list head */
	ALT_STACK,   /* the altstack thread's sigaltstack */
	ALT_HANDLER, /* its SIGUSR1 handler runs on it */
	RSEQ,        /* each thread's rseq area is registered (only when glibc registers) */
};

enum kind { COUNTER, CONDWAIT, FUTEXWAIT, SLEEPER, ALTSTACK };

struct worker {
	pthread_t th;
	int idx;
	enum kind kind;
	pid_t tid;		 /* gettid() at start */
	void *robust_head;	 /* get_robust_list() at start */
	volatile uint64_t count; /* advanced by counters */
	volatile int done;
	int broken; /* break_own() done */
};

static struct worker w[NTHREADS];
static __thread uint64_t tls_value = 0x5eed;
static volatile int stop;
static volatile int corrupt_now;
static struct robust_list_head dummy_head = {{&dummy_head.list}, 0, NULL};
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

#define wfail(me, item, fmt, ...)                                                          \
	zoo_fail((item), "thread %d (tid %d): " fmt, (me)->idx, (me)->tid, ##__VA_ARGS__)

static void tiny_sleep(void)
{
	struct timespec ts = { 0, 1000000 };

	nanosleep(&ts, NULL);
}

static struct rseq *rseq_area(void)
{
	return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

/* After a signal is delivered the kernel rewrites the rseq area of a registered thread. */
static int rseq_alive(void)
{
	struct rseq *rs = rseq_area();

	rs->cpu_id_start = 0xfffffff0u;
	raise(SIGUSR2);
	return rs->cpu_id_start < 4096;
}

/* Unregisters this thread's rseq area (glibc's registration length is not public: the
 * kernel refuses a wrong one, so the likely ones are tried). */
static void rseq_unregister(void)
{
	static const unsigned lens[] = {32, 64, 128, 256};
	size_t i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		if (syscall(SYS_rseq, rseq_area(), lens[i], RSEQ_FLAG_UNREGISTER, 0x53053053) == 0)
			return;
	zoo_die("rseq unregister");
}

/* The break of the item a counting thread owns, once main says so. */
static void break_own(struct worker *me, sigset_t *set, stack_t *ss)
{
	static const struct timespec zero = {0, 0};
	sigset_t one;

	if (me->idx == MASK_T && ZOO_BREAK(MASK)) {
		sigaddset(set, SIGRTMIN + 20);
		pthread_sigmask(SIG_SETMASK, set, NULL);
	}
	if (me->idx == TLS_T && ZOO_BREAK(TLS))
		tls_value = tls_expect(me->idx) ^ 1;
	if (me->idx == PENDING_T && ZOO_BREAK(PENDING)) {
		sigemptyset(&one);
		sigaddset(&one, SIGRTMIN + PENDING_T);
		sigtimedwait(&one, NULL, &zero);
	}
	if (me->idx == ROBUST_T && ZOO_BREAK(ROBUST))
		syscall(SYS_set_robust_list, &dummy_head, sizeof(dummy_head));
	if (me->idx == RSEQ_T && ZOO_BREAK(RSEQ) && __rseq_size)
		rseq_unregister();
	if (me->kind == ALTSTACK && ZOO_BREAK(ALT_STACK)) {
		ss->ss_size = SS_LEN - 4096;
		sigaltstack(ss, NULL);
	}
}

static void check_self(struct worker *me)
{
	sigset_t want, have, pend;
	struct robust_list_head *head;
	size_t len;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	int s;

	if (tid != me->tid)
		wfail(me, ZOO_UNBREAKABLE, "gettid() is %d", tid);
	if (tls_value != tls_expect(me->idx))
		wfail(me, TLS, "TLS value %#llx, want %#llx", (unsigned long long)tls_value,
		      (unsigned long long)tls_expect(me->idx));
	own_mask(me->idx, &want);
	pthread_sigmask(SIG_SETMASK, NULL, &have);
	for (s = 1; s < 65; s++) {
		if (sigismember(&want, s) != sigismember(&have, s)) {
			wfail(me, MASK, "signal %d %s in the mask", s,
			      sigismember(&have, s) ? "unexpectedly" : "not");
			break;
		}
	}
	sigpending(&pend);
	if (sigismember(&pend, SIGRTMIN + me->idx) != (me->idx == PENDING_T))
		wfail(me, PENDING, "signal %d %spending", SIGRTMIN + me->idx,
		      me->idx == PENDING_T ? "not " : "unexpectedly ");
	if (syscall(SYS_get_robust_list, 0, &head, &len) || (void *)head != me->robust_head)
		wfail(me, ROBUST, "robust list %p, was %p", (void *)head, me->robust_head);
	if (__rseq_size && !rseq_alive())
		wfail(me, RSEQ, "rseq area not updated by the kernel (not registered?)");
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
			if (corrupt_now && !me->broken) {
				break_own(me, &set, &ss);
				me->broken = 1;
			}
			if (!(corrupt_now && me->idx == STUCK_T && ZOO_BREAK(COUNTING)))
				me->count++;
			tiny_sleep();
		}
		/* The break is done also when main stopped the loop just before it came. */
		if (corrupt_now && !me->broken) {
			break_own(me, &set, &ss);
			me->broken = 1;
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
			wfail(me, ALT_STACK, "sigaltstack %p+%zu flags %#x, want %p+%d", got.ss_sp,
			      got.ss_size, got.ss_flags, alt, SS_LEN);
		handler_ran = 0;
		raise(SIGUSR1);
		if (!handler_ran || handler_sp <= (uintptr_t)alt ||
		    handler_sp >= (uintptr_t)alt + SS_LEN)
			wfail(me, ALT_HANDLER,
			      "SIGUSR1 handler ran at %#lx, outside the alternate stack %p",
			      (unsigned long)handler_sp, alt);
	}
	me->done = 1;
	return NULL;
}

/* Waits (up to 5 s each: a 1 ms sleep that long late is a stuck thread) until every
 * counting thread went past `snap`. */
static void counters_advance(const uint64_t *snap)
{
	double deadline;
	int i;

	for (i = 0; i < NTHREADS; i++) {
		if (w[i].kind != COUNTER && w[i].kind != ALTSTACK)
			continue;
		deadline = zoo_now() + 5;
		while (w[i].count <= snap[i] && zoo_now() < deadline)
			tiny_sleep();
		ZOO_CHECK(COUNTING, w[i].count > snap[i], "thread %d (tid %d) counter stuck at %llu",
			  i, w[i].tid, (unsigned long long)snap[i]);
	}
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	uint64_t snap[NTHREADS];
	pid_t main_tid = (pid_t)syscall(SYS_gettid);
	int i, r;

	/* The rseq item exists where glibc registers rseq areas. */
	zoo_init(argc, argv, __rseq_size ? RSEQ : RSEQ - 1);
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
	if (ZOO_BREAK(MAIN_TLS))
		tls_value ^= 1;
	if (ZOO_BREAK(ALT_HANDLER)) {
		sa.sa_handler = on_usr1;
		sa.sa_flags = 0;
		sigaction(SIGUSR1, &sa, NULL);
	}
	corrupt_now = 1;
	zoo_wait();

	ZOO_CHECK(ZOO_UNBREAKABLE, (pid_t)syscall(SYS_gettid) == main_tid, "main tid %ld, was %d",
		  (long)syscall(SYS_gettid), main_tid);
	ZOO_CHECK(MAIN_TLS, tls_value == 0x3a1, "main TLS value %#llx",
		  (unsigned long long)tls_value);
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
	for (i = 0; i < NTHREADS; i++)
		pthread_join(w[i].th, NULL);
	return zoo_done();
}
