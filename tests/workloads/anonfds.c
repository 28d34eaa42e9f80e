/* Anon-inode fds: an eventfd holding 5, a signalfd for SIGUSR1 with one SIGUSR1 pending, a
 * periodic CLOCK_MONOTONIC timerfd (first expiry 3 s after setup, then every 100 ms) and
 * an epoll set watching the three. After the restore the counter is still 5, the signal is
 * read from the signalfd, the timerfd expires neither before its time nor later than the
 * pause plus ZOO_TIMER_MARGIN after it, keeps its interval, and epoll_wait reports the
 * ready fds with their data words. */
#include "zoo.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>

#define D_EFD 0x1111u
#define D_SFD 0x2222u
#define D_TFD 0x3333u
#define DUE 3.0 /* s after setup: the timerfd's first expiry */

enum {
	EPOLL_READY = 1, /* epoll reports the eventfd and the signalfd with their data words */
	EFD_NONBLOCK_KEPT,
	EFD_COUNTER,
	SFD_SIGNAL,
	TFD_INTERVAL,
	TFD_NOT_EARLY,
	TFD_ON_TIME,
	TFD_EXPIRATIONS,
	EPOLL_QUIET, /* and nothing once the fds are read */
	ITEMS = EPOLL_QUIET
};

/* Bitmask of the data words epoll_wait reports within `ms`: 1 efd, 2 sfd, 4 tfd, 8 other. */
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

static void arm(int tfd, double at, long interval_ns)
{
	struct itimerspec its = {{0, interval_ns}, {(time_t)at, (long)((at - (time_t)at) * 1e9)}};

	if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL))
		zoo_die("timerfd_settime");
}

int main(int argc, char **argv)
{
	struct itimerspec its = {{0, 100000000}, {3, 0}}, got, off = {{0, 0}, {0, 0}};
	struct signalfd_siginfo si;
	struct epoll_event ev;
	double start, deadline, fired = 0, late = 0;
	uint64_t v = 0;
	sigset_t set, usr2;
	int efd, sfd, tfd, ep, r;

	zoo_init(argc, argv, ITEMS);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		zoo_die("sigprocmask");
	sigdelset(&set, SIGUSR2);
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
	start = zoo_now();
	if (timerfd_settime(tfd, 0, &its, NULL))
		zoo_die("timerfd_settime");

	zoo_ready();
	if (ZOO_BREAK(EPOLL_READY))
		epoll_ctl(ep, EPOLL_CTL_DEL, efd, NULL);
	if (ZOO_BREAK(EFD_NONBLOCK_KEPT))
		fcntl(efd, F_SETFL, 0);
	v = 1;
	if (ZOO_BREAK(EFD_COUNTER) && write(efd, &v, 8) != 8)
		zoo_die("write eventfd");
	if (ZOO_BREAK(SFD_SIGNAL)) {
		/* The signalfd now takes SIGUSR2, one of which is pending. */
		sigemptyset(&usr2);
		sigaddset(&usr2, SIGUSR2);
		if (signalfd(sfd, &usr2, 0) != sfd || kill(getpid(), SIGUSR2))
			zoo_die("break the signalfd");
	}
	if (ZOO_BREAK(TFD_INTERVAL))
		arm(tfd, start + DUE, 200000000);
	if (ZOO_BREAK(TFD_NOT_EARLY))
		arm(tfd, start + 1, 100000000);
	if (ZOO_BREAK(TFD_ON_TIME))
		arm(tfd, start + DUE + ZOO_TIMER_MARGIN + 0.5, 100000000);
	zoo_wait();

	r = ready(ep, 0);
	if (r & 4) /* already expired (edge-triggered: reported once) */
		fired = zoo_now() - start;
	ZOO_CHECK(EPOLL_READY, r == 3 || r == 7, "epoll reports %#x, not the eventfd and the signalfd",
		  r);
	ZOO_CHECK(EFD_NONBLOCK_KEPT, fcntl(efd, F_GETFL) & O_NONBLOCK, "eventfd lost O_NONBLOCK");
	v = 0;
	ZOO_CHECK(EFD_COUNTER, read(efd, &v, 8) == 8 && v == 5, "eventfd counter %llu, not 5 (%s)",
		  (unsigned long long)v, strerror(errno));
	ZOO_CHECK(SFD_SIGNAL, read(sfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo == SIGUSR1,
		  "signalfd: no SIGUSR1 (%s, signal %u)", strerror(errno), si.ssi_signo);
	ZOO_CHECK(TFD_INTERVAL,
		  timerfd_gettime(tfd, &got) == 0 && got.it_interval.tv_sec == 0 &&
			  got.it_interval.tv_nsec == 100000000,
		  "timerfd interval %ld.%09ld, want 0.1 s", (long)got.it_interval.tv_sec,
		  got.it_interval.tv_nsec);
	/* Waits past the latest time it may expire, to tell how late it was. */
	deadline = start + DUE + zoo_paused() + ZOO_TIMER_MARGIN + 1;
	while (!fired && zoo_now() < deadline) {
		if (ready(ep, 50) & 4) {
			fired = zoo_now() - start;
			break;
		}
	}
	if (fired)
		late = zoo_lateness("timerfd", DUE, fired);
	ZOO_CHECK(TFD_NOT_EARLY, !fired || fired >= DUE - 0.001, "timerfd expired after %.3f s",
		  fired);
	ZOO_CHECK(TFD_ON_TIME, fired && late <= ZOO_TIMER_MARGIN,
		  "timerfd due at %.1f s expired %s (%.3f s late beyond the pause)", DUE,
		  fired ? "late" : "never", late);
	if (ZOO_BREAK(TFD_EXPIRATIONS))
		timerfd_settime(tfd, 0, &off, NULL); /* clears the expirations */
	ZOO_CHECK(TFD_EXPIRATIONS, !fired || (read(tfd, &v, 8) == 8 && v >= 1),
		  "timerfd read %llu expirations (%s)", (unsigned long long)v, strerror(errno));
	if (ZOO_BREAK(EPOLL_QUIET)) {
		v = 1;
		if (write(efd, &v, 8) != 8)
			zoo_die("write eventfd");
	}
	r = ready(ep, 0);
	ZOO_CHECK(EPOLL_QUIET, (r & 3) == 0, "epoll still reports %#x after the reads", r);
	return zoo_done();
}
