/* POSIX timers: a one-shot CLOCK_MONOTONIC timer firing 2 s after setup with a value, a
 * periodic CLOCK_REALTIME timer (50 ms) that keeps ticking after a restore, and an armed
 * but far CLOCK_BOOTTIME timer; their ids must be the same after the restore. */
#include "zoo.h"
#include <time.h>

static volatile int oneshot, ticks, bad_value;
static volatile double fired_at;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_usr2(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_value.sival_int != 0x5eed)
		bad_value = si->si_value.sival_int;
	oneshot++;
	fired_at = now();
}

static void on_tick(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_value.sival_int != 0x71c)
		bad_value = si->si_value.sival_int;
	ticks++;
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

int main(int argc, char **argv)
{
	struct sigaction sa;
	timer_t t1, t2, t3, t4;
	struct itimerspec one = {{0, 0}, {2, 0}}, per = {{0, 50000000}, {0, 50000000}};
	struct itimerspec far = {{7, 0}, {3600, 0}}, got;
	struct timespec tick = {0, 10000000};
	double start, deadline;
	int before;

	zoo_init(argc, argv);
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
	start = now();
	if (timer_settime(t1, 0, &one, NULL) || timer_settime(t2, 0, &per, NULL) ||
	    timer_settime(t3, 0, &far, NULL))
		zoo_die("timer_settime");

	zoo_ready();
	if (zoo_corrupt)
		timer_delete(t4);
	zoo_wait();

	ZOO_CHECK(timer_gettime(t2, &got) == 0 && got.it_interval.tv_nsec == 50000000 &&
			  got.it_interval.tv_sec == 0,
		  "periodic timer %p: interval lost (%s)", (void *)t2, strerror(errno));
	ZOO_CHECK(timer_gettime(t3, &got) == 0 && got.it_interval.tv_sec == 7 &&
			  got.it_value.tv_sec > 3500 && got.it_value.tv_sec <= 3600,
		  "far timer %p: %ld s left, interval %ld s", (void *)t3, (long)got.it_value.tv_sec,
		  (long)got.it_interval.tv_sec);
	ZOO_CHECK(timer_gettime(t4, &got) == 0 && got.it_value.tv_sec == 0 &&
			  got.it_value.tv_nsec == 0,
		  "unarmed timer %p: %s", (void *)t4, strerror(errno));

	deadline = now() + 60;
	while (!oneshot && now() < deadline)
		nanosleep(&tick, NULL);
	ZOO_CHECK(oneshot == 1, "one-shot timer fired %d times", oneshot);
	ZOO_CHECK(!oneshot || fired_at - start >= 2.0 - 0.001, "one-shot fired after %.3f s",
		  fired_at - start);
	ZOO_CHECK(timer_gettime(t1, &got) == 0 && got.it_value.tv_sec == 0 &&
			  got.it_value.tv_nsec == 0,
		  "one-shot timer re-armed");

	before = ticks;
	deadline = now() + 30;
	while (ticks < before + 3 && now() < deadline)
		nanosleep(&tick, NULL);
	ZOO_CHECK(ticks >= before + 3, "periodic timer stopped ticking (%d ticks)", ticks);
	ZOO_CHECK(bad_value == 0, "a timer signal carried value %#x", bad_value);
	return zoo_done();
}
