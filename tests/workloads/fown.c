/*
 * File owners and async I/O signals: the read end of a pipe is O_ASYNC|O_NONBLOCK, owned
 * by the process (F_SETOWN) with F_SETSIG SIGUSR1. After SIGTERM the owner, signal and
 * flags read back as set, and writing to the pipe makes the kernel send one signal to the
 * process (delivered before write() returns to it).
 */
#include "zoo.h"

enum { OWNER = 1, SIGNAL, FLAGS, DELIVERS, ITEMS = DELIVERS };

static volatile sig_atomic_t got_sig;

/* Counts SIGUSR1 and SIGUSR2 alike: what F_SETSIG chooses is the SIGNAL item. */
static void on_sig(int sig)
{
	(void)sig;
	got_sig++;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	sigset_t usr1;
	int p[2], fl;

	zoo_init(argc, argv, ITEMS);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sig;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) || sigaction(SIGUSR2, &sa, NULL))
		zoo_die("sigaction");
	if (pipe(p))
		zoo_die("pipe");
	if (fcntl(p[0], F_SETOWN, getpid()) || fcntl(p[0], F_SETSIG, SIGUSR1) ||
	    fcntl(p[0], F_SETFL, O_ASYNC | O_NONBLOCK))
		zoo_die("fcntl");
	zoo_ready();
	/* The process group (the workload leads its own): the signal still comes here. */
	if (ZOO_BREAK(OWNER))
		fcntl(p[0], F_SETOWN, -getpgrp());
	if (ZOO_BREAK(SIGNAL))
		fcntl(p[0], F_SETSIG, SIGUSR2);
	if (ZOO_BREAK(FLAGS))
		fcntl(p[0], F_SETFL, O_ASYNC);
	if (ZOO_BREAK(DELIVERS)) {
		sigemptyset(&usr1);
		sigaddset(&usr1, SIGUSR1);
		sigprocmask(SIG_BLOCK, &usr1, NULL);
	}
	zoo_wait();

	ZOO_CHECK(OWNER, fcntl(p[0], F_GETOWN) == getpid(), "owner is %d", fcntl(p[0], F_GETOWN));
	ZOO_CHECK(SIGNAL, fcntl(p[0], F_GETSIG) == SIGUSR1, "signal is %d", fcntl(p[0], F_GETSIG));
	fl = fcntl(p[0], F_GETFL);
	ZOO_CHECK(FLAGS, (fl & (O_ASYNC | O_NONBLOCK)) == (O_ASYNC | O_NONBLOCK), "flags %#x", fl);
	if (write(p[1], "x", 1) != 1)
		zoo_fail(0, "write: %s", strerror(errno));
	ZOO_CHECK(DELIVERS, got_sig == 1, "%d signals seen after the write, want 1", (int)got_sig);
	return zoo_done();
}
