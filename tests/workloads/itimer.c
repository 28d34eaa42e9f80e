/* Interval timers: ITIMER_REAL fires once 2 s after setup (so, after a restore), neither
 * early nor later than the pause plus ZOO_TIMER_MARGIN after that, and ITIMER_VIRTUAL /
 * ITIMER_PROF are armed far in the future with intervals to be kept. */
#include "zoo.h"
#include <sys/time.h>

#define DUE 2.0

enum {
	VIRT_INTERVAL = 1,
	VIRT_VALUE,
	PROF_INTERVAL,
	PROF_VALUE,
	REAL_ONCE,      /* SIGALRM came exactly once */
	REAL_NOT_EARLY, /* not before 2 s */
	REAL_ON_TIME,   /* nor later than 2 s plus the pause plus the margin */
	REAL_DISARMED,  /* and ITIMER_REAL is not armed again */
	ITEMS = REAL_DISARMED
};

static volatile int alarms;
static volatile double fired_at;

static void on_alrm(int sig)
{
	(void)sig;
	if (!alarms)
		fired_at = zoo_now();
	alarms++;
}

/* ITIMER_REAL to fire at `at` (monotonic seconds; at once if that is past), then every
 * `interval` s. */
static void arm_real(double at, long interval)
{
	double in = at - zoo_now() > 1e-6 ? at - zoo_now() : 1e-6;
	struct itimerval v = {{interval, 0}, {(time_t)in, (long)((in - (time_t)in) * 1e6)}};

	if (setitimer(ITIMER_REAL, &v, NULL))
		zoo_die("setitimer");
}

int main(int argc, char **argv)
{
	struct itimerval real = {{0, 0}, {2, 0}};
	struct itimerval virt = {{500, 0}, {1000, 0}};
	struct itimerval prof = {{300, 250000}, {900, 0}};
	struct itimerval got;
	struct timespec tick = {0, 10000000};
	double start, deadline, late = 0;

	zoo_init(argc, argv, ITEMS);
	signal(SIGALRM, on_alrm);
	start = zoo_now();
	if (setitimer(ITIMER_REAL, &real, NULL) || setitimer(ITIMER_VIRTUAL, &virt, NULL) ||
	    setitimer(ITIMER_PROF, &prof, NULL))
		zoo_die("setitimer");

	zoo_ready();
	if (ZOO_BREAK(VIRT_INTERVAL)) {
		virt.it_interval.tv_sec = 400;
		setitimer(ITIMER_VIRTUAL, &virt, NULL);
	}
	if (ZOO_BREAK(VIRT_VALUE)) {
		virt.it_value.tv_sec = 980;
		setitimer(ITIMER_VIRTUAL, &virt, NULL);
	}
	if (ZOO_BREAK(PROF_INTERVAL)) {
		prof.it_interval.tv_usec = 500000;
		setitimer(ITIMER_PROF, &prof, NULL);
	}
	if (ZOO_BREAK(PROF_VALUE)) {
		prof.it_value.tv_sec = 880;
		setitimer(ITIMER_PROF, &prof, NULL);
	}
	if (ZOO_BREAK(REAL_NOT_EARLY))
		arm_real(start + 1, 0);
	if (ZOO_BREAK(REAL_ON_TIME))
		arm_real(start + DUE + ZOO_TIMER_MARGIN + 0.5, 0);
	if (ZOO_BREAK(REAL_DISARMED))
		arm_real(start + DUE, 100);
	zoo_wait();

	getitimer(ITIMER_VIRTUAL, &got);
	ZOO_CHECK(VIRT_INTERVAL, got.it_interval.tv_sec == 500 && got.it_interval.tv_usec == 0,
		  "ITIMER_VIRTUAL interval %ld.%06ld, want 500", (long)got.it_interval.tv_sec,
		  (long)got.it_interval.tv_usec);
	ZOO_CHECK(VIRT_VALUE, got.it_value.tv_sec >= 990 && got.it_value.tv_sec <= 1000,
		  "ITIMER_VIRTUAL value %ld s, want about 1000", (long)got.it_value.tv_sec);
	getitimer(ITIMER_PROF, &got);
	ZOO_CHECK(PROF_INTERVAL, got.it_interval.tv_sec == 300 && got.it_interval.tv_usec == 250000,
		  "ITIMER_PROF interval %ld.%06ld, want 300.25", (long)got.it_interval.tv_sec,
		  (long)got.it_interval.tv_usec);
	ZOO_CHECK(PROF_VALUE, got.it_value.tv_sec >= 890 && got.it_value.tv_sec <= 900,
		  "ITIMER_PROF value %ld s, want about 900", (long)got.it_value.tv_sec);

	/* Waits (bounded, past the latest time it may fire) for ITIMER_REAL to fire. */
	deadline = start + DUE + zoo_paused() + ZOO_TIMER_MARGIN + 1;
	while (!alarms && zoo_now() < deadline)
		nanosleep(&tick, NULL);
	if (alarms)
		late = zoo_lateness("ITIMER_REAL", DUE, fired_at - start);
	if (ZOO_BREAK(REAL_ONCE))
		raise(SIGALRM);
	ZOO_CHECK(REAL_ONCE, alarms == 1, "SIGALRM fired %d times", alarms);
	ZOO_CHECK(REAL_NOT_EARLY, !alarms || fired_at - start >= DUE - 0.001,
		  "ITIMER_REAL fired after %.3f s, want %.0f s", fired_at - start, DUE);
	ZOO_CHECK(REAL_ON_TIME, !alarms || late <= ZOO_TIMER_MARGIN,
		  "ITIMER_REAL fired %.3f s late beyond the pause", late);
	getitimer(ITIMER_REAL, &got);
	ZOO_CHECK(REAL_DISARMED, got.it_value.tv_sec == 0 && got.it_value.tv_usec == 0,
		  "ITIMER_REAL re-armed after firing");
	return zoo_done();
}
