/* Anon-inode fds: an eventfd holding 5, a signalfd for SIGUSR1 with one SIGUSR1 pending, a
 * periodic CLOCK_MONOTONIC timerfd (first expiry 3 s after setup, then every 100 ms) and
 * an epoll set watching the three. After the restore the counter is still 5, the signal is
 * read from the signalfd, the timerfd does not expire before its time and keeps its
 * interval, and epoll_wait reports the ready fds with their data words. */
#include "zoo.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>

#define D_EFD 0x1111u
#define D_SFD 0x2222u
#define D_TFD 0x3333u

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Bitmask of the data words epoll_wait reports within `ms`: 1 efd, 2 sfd, 4 tfd. */
static int ready(int ep, int ms)
{
	struct epoll_event ev[8];
	int n, i, got = 0;

	n = epoll_wait(ep, ev, 8, ms);
	for (i = 0; i < n; i++)
		got |= ev[i].data.u64 == D_EFD ? 1 : ev[i].data.u64 == D_SFD ? 2 :
		       ev[i].data.u64 == D_TFD ? 4 : 8;
	return got;
}

int main(int argc, char **argv)
{
	struct itimerspec its = {{0, 100000000}, {3, 0}}, got;
	struct signalfd_siginfo si;
	struct epoll_event ev;
	double start, deadline, fired = 0;
	uint64_t v = 0;
	sigset_t set;
	int efd, sfd, tfd, ep, r;

	zoo_init(argc, argv);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		zoo_die("sigprocmask");
	efd = eventfd(5, EFD_NONBLOCK);
	sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (efd < 0 || sfd < 0 || tfd < 0 || ep < 0)
		zoo_die("creating the fds");
	if (kill(getpid(), SIGUSR1))
		zoo_die("kill(SIGUSR1)");
	ev.events = EPOLLIN;
	ev.data.u64 = D_EFD;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev))
		zoo_die("epoll_ctl efd");
	ev.data.u64 = D_SFD;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev))
		zoo_die("epoll_ctl sfd");
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = D_TFD;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev))
		zoo_die("epoll_ctl tfd");
	start = now();
	if (timerfd_settime(tfd, 0, &its, NULL))
		zoo_die("timerfd_settime");

	zoo_ready();
	if (zoo_corrupt && read(efd, &v, 8) != 8)
		zoo_die("read eventfd");
	zoo_wait();

	r = ready(ep, 0);
	ZOO_CHECK((r & 3) == 3, "epoll reports %#x, not the eventfd and the signalfd", r);
	ZOO_CHECK(fcntl(efd, F_GETFL) & O_NONBLOCK, "eventfd lost O_NONBLOCK");
	ZOO_CHECK(read(efd, &v, 8) == 8 && v == 5, "eventfd counter %llu, not 5 (%s)",
		  (unsigned long long)v, strerror(errno));
	ZOO_CHECK(read(sfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo == SIGUSR1,
		  "signalfd: no SIGUSR1 (%s)", strerror(errno));
	ZOO_CHECK(timerfd_gettime(tfd, &got) == 0 && got.it_interval.tv_sec == 0 &&
			  got.it_interval.tv_nsec == 100000000,
		  "timerfd interval lost");
	deadline = now() + 30;
	while (now() < deadline) {
		if (ready(ep, 100) & 4) {
			fired = now();
			break;
		}
	}
	ZOO_CHECK(fired != 0, "timerfd never expired");
	ZOO_CHECK(!fired || fired - start >= 3.0 - 0.001, "timerfd expired after %.3f s",
		  fired - start);
	ZOO_CHECK(read(tfd, &v, 8) == 8 && v >= 1, "timerfd read %llu expirations",
		  (unsigned long long)v);
	r = ready(ep, 0);
	ZOO_CHECK((r & 3) == 0, "epoll still reports %#x after the reads", r);
	return zoo_done();
}
