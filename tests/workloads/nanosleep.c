/* Blocked in nanosleep(2) for 3 s: interrupted by the dump and by SIGTERM, it resumes with
 * the remaining time, and the sleep must end neither early nor very late. */
#include "zoo.h"
#include <time.h>

#define SLEEP_S 3

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct timespec req = {SLEEP_S, 0}, rem;
	double start, slept;
	int eintr = 0;

	zoo_init(argc, argv);
	zoo_unblock_term();
	zoo_ready();
	start = now();
	if (zoo_corrupt)
		req.tv_sec = 1; /* wakes up early */
	while (nanosleep(&req, &rem) == -1) {
		if (errno != EINTR) {
			zoo_fail("nanosleep: %s", strerror(errno));
			break;
		}
		eintr++;
		req = rem;
	}
	slept = now() - start;
	ZOO_CHECK(slept >= SLEEP_S - 0.001, "slept %.3f s, want %d s", slept, SLEEP_S);
	/* Generous: the dump and the restore may add a few seconds each. */
	ZOO_CHECK(slept < SLEEP_S + 60, "slept %.3f s, want %d s", slept, SLEEP_S);
	fprintf(stderr, "slept %.3f s, %d EINTR\n", slept, eintr);
	zoo_wait();
	return zoo_done();
}
