/* POSIX timers: a one-shot CLOCK_MONOTONIC timer firing 2 s after setup with a value
 * (neither early nor later than the pause plus ZOO_TIMER_MARGIN after that), a periodic
 * CLOCK_REALTIME timer (50 ms) that keeps ticking on time after a restore, an armed but
 * far CLOCK_BOOTTIME timer, and one never armed; each answers by its id after the restore
 * (a changed id fails timer_gettime). */
#include "zoo.h"

#define DUE 2.0
#define PERIOD 0.05

enum {
	PERIODIC_INTERVAL = 1,
	FAR_TIMER,         /* its time left and interval */
	UNARMED,           /* exists and is disarmed */
	ONESHOT_ONCE,      /* fired exactly once */
	ONESHOT_NOT_EARLY,
	ONESHOT_ON_TIME,
	ONESHOT_DISARMED,  /* not armed again after it fired */
	PERIODIC_TICKS,    /* three more ticks in three periods plus the margin */
	SIGNAL_VALUES,     /* every timer signal carried its timer's value */
	ITEMS = SIGNAL_VALUES
};

static volatile int oneshot, ticks, bad_value;
static volatile double fired_at;

static void on_usr2(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_value.sival_int != 0x5eed)
		bad_value = si->si_value.sival_int;
	if (!oneshot)
		fired_at = zoo_now();
	oneshot++;
}

static void on_tick(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_value.sival_int != 0x71c)
		bad_value = si->si_value.sival_int;
	/* Expirations while the signal was still pending count too (a loaded machine). */
	ticks += 1 + (si->si_code == SI_TIMER ? si->si_overrun : 0);
}

static timer_t make(clockid_t clk, int sig, int val)
{
	struct sigevent sev;
	timer_t t;

	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = sig;
	sev.sigev_value.sival_int = val;
	if (timer_create(clk, &sev, &t))
		zoo_die("timer_create");
	return t;
}

/* Timer t (CLOCK_MONOTONIC) to fire at `at`, then every `interval` s. */
static void arm_at(timer_t t, double at, time_t interval)
{
	struct itimerspec v = {{interval, 0}, {(time_t)at, (long)((at - (time_t)at) * 1e9)}};

	if (timer_settime(t, TIMER_ABSTIME, &v, NULL))
		zoo_die("timer_settime");
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	timer_t t1, t2, t3, t4;
	struct itimerspec one = {{0, 0}, {2, 0}}, per = {{0, 50000000}, {0, 50000000}};
	struct itimerspec far = {{7, 0}, {3600, 0}}, got;
	struct timespec tick = {0, 10000000};
	union sigval bad = {.sival_int = 0xbad};
	double start, deadline, late = 0, from;
	sigset_t rt;
	int before;

	zoo_init(argc, argv, ITEMS);
	memset(&sa, 0, sizeof(sa));
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sa.sa_sigaction = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	sa.sa_sigaction = on_tick;
	sigaction(SIGRTMIN + 1, &sa, NULL);

	t1 = make(CLOCK_MONOTONIC, SIGUSR2, 0x5eed);
	t2 = make(CLOCK_REALTIME, SIGRTMIN + 1, 0x71c);
	t3 = make(CLOCK_BOOTTIME, SIGRTMIN + 1, 0x71c);
	t4 = make(CLOCK_MONOTONIC, SIGRTMIN + 1, 0x71c); /* created, never armed */
	start = zoo_now();
	if (timer_settime(t1, 0, &one, NULL) || timer_settime(t2, 0, &per, NULL) ||
	    timer_settime(t3, 0, &far, NULL))
		zoo_die("timer_settime");

	zoo_ready();
	if (ZOO_BREAK(PERIODIC_INTERVAL)) {
		per.it_interval.tv_nsec = 60000000;
		timer_settime(t2, 0, &per, NULL);
	}
	if (ZOO_BREAK(FAR_TIMER)) {
		far.it_value.tv_sec = 3000;
		timer_settime(t3, 0, &far, NULL);
	}
	if (ZOO_BREAK(UNARMED))
		timer_delete(t4);
	if (ZOO_BREAK(ONESHOT_NOT_EARLY))
		arm_at(t1, start + 1, 0);
	if (ZOO_BREAK(ONESHOT_ON_TIME))
		arm_at(t1, start + DUE + ZOO_TIMER_MARGIN + 0.5, 0);
	if (ZOO_BREAK(ONESHOT_DISARMED))
		arm_at(t1, start + DUE, 100);
	if (ZOO_BREAK(PERIODIC_TICKS)) {
		sigemptyset(&rt);
		sigaddset(&rt, SIGRTMIN + 1);
		sigprocmask(SIG_BLOCK, &rt, NULL);
	}
	if (ZOO_BREAK(SIGNAL_VALUES))
		sigqueue(getpid(), SIGRTMIN + 1, bad);
	zoo_wait();

	ZOO_CHECK(PERIODIC_INTERVAL,
		  timer_gettime(t2, &got) == 0 && got.it_interval.tv_nsec == 50000000 &&
			  got.it_interval.tv_sec == 0,
		  "periodic timer %p: interval %ld ns (%s)", (void *)t2, got.it_interval.tv_nsec,
		  strerror(errno));
	ZOO_CHECK(FAR_TIMER,
		  timer_gettime(t3, &got) == 0 && got.it_interval.tv_sec == 7 &&
			  got.it_value.tv_sec > 3500 && got.it_value.tv_sec <= 3600,
		  "far timer %p: %ld s left, interval %ld s", (void *)t3, (long)got.it_value.tv_sec,
		  (long)got.it_interval.tv_sec);
	ZOO_CHECK(UNARMED,
		  timer_gettime(t4, &got) == 0 && got.it_value.tv_sec == 0 && got.it_value.tv_nsec == 0,
		  "unarmed timer %p: %s", (void *)t4, strerror(errno));

	/* Waits (bounded, past the latest time it may fire) for the one-shot timer. */
	deadline = start + DUE + zoo_paused() + ZOO_TIMER_MARGIN + 1;
	while (!oneshot && zoo_now() < deadline)
		nanosleep(&tick, NULL);
	if (oneshot)
		late = zoo_lateness("one-shot timer", DUE, fired_at - start);
	if (ZOO_BREAK(ONESHOT_ONCE))
		sigqueue(getpid(), SIGUSR2, (union sigval){.sival_int = 0x5eed});
	ZOO_CHECK(ONESHOT_ONCE, oneshot == 1, "one-shot timer fired %d times", oneshot);
	ZOO_CHECK(ONESHOT_NOT_EARLY, !oneshot || fired_at - start >= DUE - 0.001,
		  "one-shot fired after %.3f s", fired_at - start);
	ZOO_CHECK(ONESHOT_ON_TIME, !oneshot || late <= ZOO_TIMER_MARGIN,
		  "one-shot fired %.3f s late beyond the pause", late);
	ZOO_CHECK(ONESHOT_DISARMED,
		  timer_gettime(t1, &got) == 0 && got.it_value.tv_sec == 0 && got.it_value.tv_nsec == 0,
		  "one-shot timer re-armed");

	before = ticks;
	from = zoo_now();
	deadline = from + 3 * PERIOD + ZOO_TIMER_MARGIN + 1;
	while (ticks < before + 3 && zoo_now() < deadline)
		nanosleep(&tick, NULL);
	ZOO_CHECK(PERIODIC_TICKS,
		  ticks >= before + 3 && zoo_now() - from <= 3 * PERIOD + ZOO_TIMER_MARGIN,
		  "periodic timer: %d ticks in %.3f s, want 3 in %.2f s", ticks - before,
		  zoo_now() - from, 3 * PERIOD);
	ZOO_CHECK(SIGNAL_VALUES, bad_value == 0, "a timer signal carried value %#x", bad_value);
	return zoo_done();
}
