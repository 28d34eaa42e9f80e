/* Signal state: handlers with flags and masks, an ignored signal, a one-shot handler,
 * blocked signals, a pending signal in the shared queue (kill), one in the thread queue
 * (raise), and two queued real-time signals carrying values. */
#include "zoo.h"

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000 /* glibc sets it; no part of the action asked for */
#endif

/* The seven actions are items 1..7 (in the order of `actions` below). */
enum {
	HUP_ACTION = 4,
	MASK = 8,     /* the blocked set: exactly SIGUSR2, SIGWINCH, SIGPIPE, SIGRTMIN+2, SIGTERM */
	PENDING_USR2, /* pending in the shared queue, delivered once when unblocked */
	PENDING_WINCH, /* pending in the thread's queue, delivered once */
	PENDING_RT,    /* two pending, delivered in order with their values */
	NOTHING_ELSE,  /* nothing else pending */
	USR1_SIGINFO,  /* a raise(SIGUSR1) reaches its handler once, with SI_TKILL */
	ITEMS = USR1_SIGINFO
};

static volatile int usr1_count, usr1_code, usr2_count, winch_count, hup_count;
static volatile int rt_count, rt_values[4];

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	usr1_count++;
	usr1_code = si->si_code;
}

static void on_usr2(int sig) { (void)sig; usr2_count++; }
static void on_winch(int sig) { (void)sig; winch_count++; }
static void on_hup(int sig) { (void)sig; hup_count++; }
static void on_pipe(int sig) { (void)sig; }

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (rt_count < 4)
		rt_values[rt_count] = si->si_value.sival_int;
	rt_count++;
}

static struct {
	int sig;
	void *h;
	int flags, masked;
} actions[] = {
	{SIGUSR1, (void *)on_usr1, SA_SIGINFO | SA_RESTART, SIGINT},
	{SIGUSR2, (void *)on_usr2, SA_RESTART | SA_NODEFER, 0},
	{SIGWINCH, (void *)on_winch, 0, SIGQUIT},
	{SIGHUP, (void *)on_hup, SA_RESETHAND, 0}, /* also: it runs once, then SIG_DFL */
	{0 /* SIGRTMIN + 2 */, (void *)on_rt, SA_SIGINFO, 0},
	{SIGINT, (void *)SIG_IGN, 0, 0},
	{SIGQUIT, (void *)SIG_DFL, 0, 0},
};
#define NACTIONS (int)(sizeof(actions) / sizeof(actions[0]))

static void set(int sig, void *h, int flags, int masked, int extra)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_flags = flags;
	if (flags & SA_SIGINFO)
		sa.sa_sigaction = h;
	else
		sa.sa_handler = h;
	sigemptyset(&sa.sa_mask);
	if (masked)
		sigaddset(&sa.sa_mask, masked);
	if (extra)
		sigaddset(&sa.sa_mask, extra);
	if (sigaction(sig, &sa, NULL))
		zoo_die("sigaction");
}

/* Whether `set` holds exactly the signals in `want` (0-terminated). */
static int exactly(const sigset_t *set, const int *want)
{
	int s, i, in;

	for (s = 1; s < 65; s++) {
		for (in = 0, i = 0; want[i]; i++)
			in |= want[i] == s;
		if (sigismember(set, s) != in)
			return 0;
	}
	return 1;
}

static void check_action(int item, int sig, void *h, int flags, int masked)
{
	struct sigaction sa;
	int want[2] = {masked, 0};
	void *got;

	if (sigaction(sig, NULL, &sa)) {
		zoo_fail(0, "sigaction(%d) query: %s", sig, strerror(errno));
		return;
	}
	got = (sa.sa_flags & SA_SIGINFO) ? (void *)sa.sa_sigaction : (void *)sa.sa_handler;
	ZOO_CHECK(item,
		  got == h && (sa.sa_flags & ~SA_RESTORER) == flags && exactly(&sa.sa_mask, want),
		  "signal %d: handler %p flags %#x, want %p %#x, and only %d in sa_mask", sig, got,
		  sa.sa_flags & ~SA_RESTORER, h, flags, masked);
}

int main(int argc, char **argv)
{
	int rt = SIGRTMIN + 2, i;
	int blocked[] = {SIGUSR2, SIGWINCH, SIGPIPE, 0 /* rt */, SIGTERM, 0};
	union sigval v;
	sigset_t block, pend, cur, one;
	struct timespec zero = {0, 0};

	zoo_init(argc, argv, ITEMS);
	actions[4].sig = rt;
	blocked[3] = rt;
	for (i = 0; i < NACTIONS; i++)
		set(actions[i].sig, actions[i].h, actions[i].flags, actions[i].masked, 0);

	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGWINCH);
	sigaddset(&block, SIGPIPE);
	sigaddset(&block, rt);
	if (sigprocmask(SIG_BLOCK, &block, NULL))
		zoo_die("sigprocmask");
	kill(getpid(), SIGUSR2); /* shared pending queue */
	raise(SIGWINCH);         /* this thread's pending queue */
	v.sival_int = 111;
	sigqueue(getpid(), rt, v);
	v.sival_int = 222;
	sigqueue(getpid(), rt, v);

	zoo_ready();
	/* An action breaks with SIGALRM added to its mask. */
	for (i = 0; i < NACTIONS; i++)
		if (ZOO_BREAK(i + 1))
			set(actions[i].sig, actions[i].h, actions[i].flags, actions[i].masked,
			    SIGALRM);
	sigemptyset(&one);
	if (ZOO_BREAK(MASK)) {
		sigaddset(&one, SIGALRM);
		sigprocmask(SIG_BLOCK, &one, NULL);
	}
	/* A pending signal taken away (one of the two real-time ones). */
	sigaddset(&one, ZOO_BREAK(PENDING_USR2) ? SIGUSR2 : ZOO_BREAK(PENDING_WINCH) ? SIGWINCH : rt);
	if (ZOO_BREAK(PENDING_USR2) || ZOO_BREAK(PENDING_WINCH) || ZOO_BREAK(PENDING_RT))
		sigtimedwait(&one, NULL, &zero);
	if (ZOO_BREAK(NOTHING_ELSE)) {
		/* SIGPIPE, blocked, pending too (handled, so its delivery below is harmless). */
		set(SIGPIPE, (void *)on_pipe, 0, 0, 0);
		raise(SIGPIPE);
	}
	if (ZOO_BREAK(USR1_SIGINFO))
		kill(getpid(), SIGUSR1);
	zoo_wait();

	for (i = 0; i < NACTIONS; i++)
		check_action(i + 1, actions[i].sig, actions[i].h, actions[i].flags,
			     actions[i].masked);

	sigprocmask(SIG_SETMASK, NULL, &cur);
	ZOO_CHECK(MASK, exactly(&cur, blocked), "the blocked set changed");
	sigpending(&pend);
	ZOO_CHECK(PENDING_USR2, sigismember(&pend, SIGUSR2) == 1, "pending SIGUSR2 lost");
	ZOO_CHECK(PENDING_WINCH, sigismember(&pend, SIGWINCH) == 1, "pending SIGWINCH lost");
	ZOO_CHECK(PENDING_RT, sigismember(&pend, rt) == 1, "pending SIGRTMIN+2 lost");
	ZOO_CHECK(NOTHING_ELSE, sigismember(&pend, SIGPIPE) == 0, "SIGPIPE became pending");

	sigprocmask(SIG_UNBLOCK, &block, NULL);
	ZOO_CHECK(PENDING_USR2, usr2_count == 1, "SIGUSR2 delivered %d times", usr2_count);
	ZOO_CHECK(PENDING_WINCH, winch_count == 1, "SIGWINCH delivered %d times", winch_count);
	ZOO_CHECK(PENDING_RT, rt_count == 2 && rt_values[0] == 111 && rt_values[1] == 222,
		  "SIGRTMIN+2 delivered %d times, values %d,%d, want 111,222", rt_count,
		  rt_values[0], rt_values[1]);

	raise(SIGUSR1);
	ZOO_CHECK(USR1_SIGINFO, usr1_count == 1 && usr1_code == SI_TKILL, "SIGUSR1 count %d code %d",
		  usr1_count, usr1_code);
	raise(SIGHUP);
	ZOO_CHECK(HUP_ACTION, hup_count == 1, "SIGHUP delivered %d times", hup_count);
	ZOO_CHECK(HUP_ACTION, signal(SIGHUP, SIG_DFL) == SIG_DFL,
		  "SIGHUP's handler not reset to SIG_DFL after it ran");
	return zoo_done();
}
