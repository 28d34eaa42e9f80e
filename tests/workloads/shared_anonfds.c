/*
 * An eventfd and a signalfd shared by a process and its child.
 *
 * P makes E (an eventfd, counter 5, non-blocking) and S (a signalfd of SIGUSR1), then
 * forks C, which holds both. After SIGTERM: P adds 3 to E and tells C (SIGTERM) to read
 * it: C must read 8, the counter of the one eventfd they share. P makes S non-blocking,
 * which C must see (status flags belong to the one description they share); each checks
 * S's mask in its own fdinfo.
 */
#include "zoo.h"

#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>

enum {
	E_SHARED = 1, /* C reads what P and the dump left in the one eventfd */
	S_MASK,       /* S is one signalfd of SIGUSR1 for both */
	ITEMS = S_MASK
};

/* Whether fd `fd`'s fdinfo shows the signal mask of SIGUSR1 alone. */
static int watches_usr1(int fd)
{
	char path[64], line[256], want[64];
	int found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	snprintf(want, sizeof(want), "sigmask:\t%016llx\n", 1ULL << (SIGUSR1 - 1));
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strcmp(line, want) == 0)
			found = 1;
	fclose(f);
	return found;
}

static int make_s(int sig)
{
	sigset_t m;
	int s;

	sigemptyset(&m);
	sigaddset(&m, sig);
	s = signalfd(-1, &m, SFD_CLOEXEC);
	if (s < 0)
		zoo_die("signalfd");
	return s;
}

int main(int argc, char **argv)
{
	uint64_t v = 0;
	int e, s;
	pid_t kid;

	zoo_init(argc, argv, ITEMS);
	e = eventfd(5, EFD_NONBLOCK | EFD_CLOEXEC);
	if (e < 0)
		zoo_die("eventfd");
	s = make_s(SIGUSR1);
	kid = zoo_fork_ready();
	if (kid == 0) {
		zoo_child_ready();
		zoo_wait();
		ZOO_CHECK(E_SHARED, read(e, &v, sizeof(v)) == sizeof(v) && v == 8,
			  "C read %llu from E, not 8", (unsigned long long)v);
		ZOO_CHECK(S_MASK, watches_usr1(s) && (fcntl(s, F_GETFL) & O_NONBLOCK),
			  "C's S does not watch SIGUSR1 or is not P's (blocking)");
		return zoo_failures ? 1 : 0;
	}

	zoo_ready();
	if (ZOO_BREAK(E_SHARED)) {
		/* P's E becomes its own: C no longer sees P's write. */
		int mine = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

		if (mine < 0 || dup3(mine, e, O_CLOEXEC) != e)
			zoo_die("replace E");
		close(mine);
	}
	if (ZOO_BREAK(S_MASK)) {
		int other = make_s(SIGUSR2);

		if (dup3(other, s, O_CLOEXEC) != s)
			zoo_die("replace S");
		close(other);
	}
	zoo_wait();

	v = 3;
	if (write(e, &v, sizeof(v)) != sizeof(v))
		zoo_fail(0, "write to E: %s", strerror(errno));
	if (fcntl(s, F_SETFL, O_NONBLOCK))
		zoo_fail(0, "O_NONBLOCK on S: %s", strerror(errno));
	if (kill(kid, SIGTERM))
		zoo_fail(0, "kill C: %s", strerror(errno));
	zoo_reap(kid, "C");
	ZOO_CHECK(S_MASK, watches_usr1(s), "P's S does not watch SIGUSR1");
	return zoo_done();
}
