/* Blocked in nanosleep(2) for 3 s: interrupted by the dump and by SIGTERM, it resumes with
 * the remaining time, and the sleep must end neither early nor later than the pause plus
 * ZOO_TIMER_MARGIN after its time. */
#include "zoo.h"

#define SLEEP_S 3

enum { NOT_EARLY = 1, ON_TIME, ITEMS = ON_TIME };

int main(int argc, char **argv)
{
	struct timespec req = {SLEEP_S, 0}, rem;
	double start, slept, late;
	int eintr = 0;

	zoo_init(argc, argv, ITEMS);
	zoo_unblock_term();
	zoo_ready();
	start = zoo_now();
	if (ZOO_BREAK(NOT_EARLY))
		req.tv_sec = 1;
	if (ZOO_BREAK(ON_TIME)) {
		req.tv_sec = SLEEP_S;
		req.tv_nsec = (long)((ZOO_TIMER_MARGIN + 0.5) * 1e9);
	}
	while (nanosleep(&req, &rem) == -1) {
		if (errno != EINTR) {
			zoo_fail(0, "nanosleep: %s", strerror(errno));
			break;
		}
		eintr++;
		req = rem;
	}
	slept = zoo_now() - start;
	fprintf(stderr, "slept %.3f s, %d EINTR\n", slept, eintr);
	zoo_wait();
	late = zoo_lateness("nanosleep", SLEEP_S, slept);
	ZOO_CHECK(NOT_EARLY, slept >= SLEEP_S - 0.001, "slept %.3f s, want %d s", slept, SLEEP_S);
	ZOO_CHECK(ON_TIME, late <= ZOO_TIMER_MARGIN, "slept %.3f s, %.3f s late beyond the pause",
		  slept, late);
	return zoo_done();
}
