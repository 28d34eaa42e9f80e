/* Signal state: handlers with flags and masks, an ignored signal, a one-shot handler,
 * blocked signals, a pending signal in the shared queue (kill), one in the thread queue
 * (raise), and two queued real-time signals carrying values. */
#include "zoo.h"

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

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (rt_count < 4)
		rt_values[rt_count] = si->si_value.sival_int;
	rt_count++;
}

static void set(int sig, void *h, int flags, int masked)
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
	if (sigaction(sig, &sa, NULL))
		zoo_die("sigaction");
}

static void check_action(int sig, void *h, int flags, int masked)
{
	struct sigaction sa;
	void *got;

	if (sigaction(sig, NULL, &sa)) {
		zoo_fail("sigaction(%d) query: %s", sig, strerror(errno));
		return;
	}
	got = (sa.sa_flags & SA_SIGINFO) ? (void *)sa.sa_sigaction : (void *)sa.sa_handler;
	ZOO_CHECK(got == h, "signal %d: handler %p, want %p", sig, got, h);
	ZOO_CHECK((sa.sa_flags & flags) == flags, "signal %d: flags %#x lack %#x", sig,
		  sa.sa_flags, flags);
	if (masked)
		ZOO_CHECK(sigismember(&sa.sa_mask, masked) == 1, "signal %d: sa_mask lost %d", sig,
			  masked);
}

int main(int argc, char **argv)
{
	int rt = SIGRTMIN + 2;
	union sigval v;
	sigset_t block, pend, cur;
	struct timespec zero = {0, 0};

	zoo_init(argc, argv);
	set(SIGUSR1, on_usr1, SA_SIGINFO | SA_RESTART, SIGINT);
	set(SIGUSR2, on_usr2, SA_RESTART | SA_NODEFER, 0);
	set(SIGWINCH, on_winch, 0, SIGQUIT);
	set(SIGHUP, on_hup, SA_RESETHAND, 0);
	set(rt, on_rt, SA_SIGINFO, 0);
	set(SIGINT, SIG_IGN, 0, 0);
	set(SIGQUIT, SIG_DFL, 0, 0);

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
	if (zoo_corrupt) {
		sigset_t one;

		sigemptyset(&one);
		sigaddset(&one, SIGUSR2);
		sigtimedwait(&one, NULL, &zero); /* swallow the pending SIGUSR2 */
	}
	zoo_wait();

	check_action(SIGUSR1, (void *)on_usr1, SA_SIGINFO | SA_RESTART, SIGINT);
	check_action(SIGUSR2, (void *)on_usr2, SA_RESTART | SA_NODEFER, 0);
	check_action(SIGWINCH, (void *)on_winch, 0, SIGQUIT);
	check_action(SIGHUP, (void *)on_hup, SA_RESETHAND, 0);
	check_action(rt, (void *)on_rt, SA_SIGINFO, 0);
	check_action(SIGINT, (void *)SIG_IGN, 0, 0);
	check_action(SIGQUIT, (void *)SIG_DFL, 0, 0);

	sigprocmask(SIG_SETMASK, NULL, &cur);
	ZOO_CHECK(sigismember(&cur, SIGPIPE) == 1, "SIGPIPE no longer blocked");
	ZOO_CHECK(sigismember(&cur, SIGUSR2) == 1, "SIGUSR2 no longer blocked");
	ZOO_CHECK(sigismember(&cur, rt) == 1, "SIGRTMIN+2 no longer blocked");
	ZOO_CHECK(sigismember(&cur, SIGUSR1) == 0, "SIGUSR1 became blocked");
	sigpending(&pend);
	ZOO_CHECK(sigismember(&pend, SIGUSR2) == 1, "pending SIGUSR2 lost");
	ZOO_CHECK(sigismember(&pend, SIGWINCH) == 1, "pending SIGWINCH lost");
	ZOO_CHECK(sigismember(&pend, rt) == 1, "pending SIGRTMIN+2 lost");
	ZOO_CHECK(sigismember(&pend, SIGPIPE) == 0, "SIGPIPE became pending");

	sigprocmask(SIG_UNBLOCK, &block, NULL);
	ZOO_CHECK(usr2_count == 1, "SIGUSR2 delivered %d times", usr2_count);
	ZOO_CHECK(winch_count == 1, "SIGWINCH delivered %d times", winch_count);
	ZOO_CHECK(rt_count == 2, "SIGRTMIN+2 delivered %d times", rt_count);
	ZOO_CHECK(rt_values[0] == 111 && rt_values[1] == 222, "rt values %d,%d, want 111,222",
		  rt_values[0], rt_values[1]);

	raise(SIGUSR1);
	ZOO_CHECK(usr1_count == 1 && usr1_code == SI_TKILL, "SIGUSR1 count %d code %d",
		  usr1_count, usr1_code);
	raise(SIGHUP);
	ZOO_CHECK(hup_count == 1, "SIGHUP delivered %d times", hup_count);
	check_action(SIGHUP, (void *)SIG_DFL, 0, 0);
	return zoo_done();
}
