/* Lowered soft limits and lowered hard limits (raising needs CAP_SYS_RESOURCE). Each soft
 * limit is set below its hard limit, so that a break can lower the hard one. */
#include "zoo.h"
#include <sys/resource.h>

static const struct {
	int res;
	const char *name;
	rlim_t soft, hard; /* RLIM_INFINITY in hard: keep the current hard limit */
} want[] = {
	{RLIMIT_NOFILE, "NOFILE", 777, RLIM_INFINITY},
	{RLIMIT_STACK, "STACK", 4u << 20, RLIM_INFINITY},
	{RLIMIT_CORE, "CORE", 0, RLIM_INFINITY},
	{RLIMIT_MSGQUEUE, "MSGQUEUE", 4096, 8192},
	{RLIMIT_RTTIME, "RTTIME", 1000000, 2000000},
	{RLIMIT_SIGPENDING, "SIGPENDING", 1000, RLIM_INFINITY},
};

/* Item i + 1: limit i, soft and hard. */
#define N (sizeof(want) / sizeof(want[0]))
#define ITEMS ((int)N)

int main(int argc, char **argv)
{
	struct rlimit rl, set[N];
	size_t i;

	zoo_init(argc, argv, ITEMS);
	for (i = 0; i < N; i++) {
		if (getrlimit(want[i].res, &rl))
			zoo_die("getrlimit");
		if (want[i].hard != RLIM_INFINITY && want[i].hard < rl.rlim_max)
			rl.rlim_max = want[i].hard;
		rl.rlim_cur = want[i].soft < rl.rlim_max ? want[i].soft : rl.rlim_max - 1;
		if (rl.rlim_max == 0 || setrlimit(want[i].res, &rl))
			zoo_die(want[i].name);
		set[i] = rl;
	}

	zoo_ready();
	for (i = 0; i < N; i++)
		if (ZOO_BREAK((int)i + 1)) {
			rl = set[i];
			rl.rlim_max--;
			setrlimit(want[i].res, &rl);
		}
	zoo_wait();

	for (i = 0; i < N; i++) {
		getrlimit(want[i].res, &rl);
		ZOO_CHECK((int)i + 1, rl.rlim_cur == set[i].rlim_cur && rl.rlim_max == set[i].rlim_max,
			  "RLIMIT_%s is %llu/%llu, want %llu/%llu", want[i].name,
			  (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
			  (unsigned long long)set[i].rlim_cur, (unsigned long long)set[i].rlim_max);
	}
	return zoo_done();
}
