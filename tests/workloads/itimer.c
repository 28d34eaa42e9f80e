/* Interval timers: ITIMER_REAL fires once 2 s after setup (so, after a restore), and
 * ITIMER_VIRTUAL / ITIMER_PROF are armed far in the future with intervals to be kept. */
#include "zoo.h"
#include <sys/time.h>
#include <time.h>

static volatile int alarms;
static volatile double fired_at;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_alrm(int sig)
{
	(void)sig;
	alarms++;
	fired_at = now();
}

int main(int argc, char **argv)
{
	struct itimerval real = {{0, 0}, {2, 0}};
	struct itimerval virt = {{500, 0}, {1000, 0}};
	struct itimerval prof = {{300, 250000}, {900, 0}};
	struct itimerval got;
	struct timespec tick = {0, 10000000};
	double start, deadline;

	zoo_init(argc, argv);
	signal(SIGALRM, on_alrm);
	start = now();
	if (setitimer(ITIMER_REAL, &real, NULL) || setitimer(ITIMER_VIRTUAL, &virt, NULL) ||
	    setitimer(ITIMER_PROF, &prof, NULL))
		zoo_die("setitimer");

	zoo_ready();
	if (zoo_corrupt) {
		virt.it_interval.tv_sec = 400;
		setitimer(ITIMER_VIRTUAL, &virt, NULL);
	}
	zoo_wait();

	getitimer(ITIMER_VIRTUAL, &got);
	ZOO_CHECK(got.it_interval.tv_sec == 500 && got.it_interval.tv_usec == 0,
		  "ITIMER_VIRTUAL interval %ld.%06ld, want 500", (long)got.it_interval.tv_sec,
		  (long)got.it_interval.tv_usec);
	ZOO_CHECK(got.it_value.tv_sec >= 990 && got.it_value.tv_sec <= 1000,
		  "ITIMER_VIRTUAL value %ld s, want about 1000", (long)got.it_value.tv_sec);
	getitimer(ITIMER_PROF, &got);
	ZOO_CHECK(got.it_interval.tv_sec == 300 && got.it_interval.tv_usec == 250000,
		  "ITIMER_PROF interval %ld.%06ld, want 300.25", (long)got.it_interval.tv_sec,
		  (long)got.it_interval.tv_usec);
	ZOO_CHECK(got.it_value.tv_sec >= 890 && got.it_value.tv_sec <= 900,
		  "ITIMER_PROF value %ld s, want about 900", (long)got.it_value.tv_sec);

	/* Wait (bounded) for ITIMER_REAL to fire if it has not yet. */
	deadline = now() + 60;
	while (!alarms && now() < deadline)
		nanosleep(&tick, NULL);
	ZOO_CHECK(alarms == 1, "SIGALRM fired %d times", alarms);
	ZOO_CHECK(alarms == 0 || fired_at - start >= 2.0 - 0.001,
		  "ITIMER_REAL fired after %.3f s, want 2 s", fired_at - start);
	getitimer(ITIMER_REAL, &got);
	ZOO_CHECK(got.it_value.tv_sec == 0 && got.it_value.tv_usec == 0,
		  "ITIMER_REAL re-armed after firing");
	return zoo_done();
}
