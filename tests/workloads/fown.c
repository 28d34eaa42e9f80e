/*
 * File owners and async I/O signals: the read end of a pipe is O_ASYNC|O_NONBLOCK, owned
 * by the process (F_SETOWN) with F_SETSIG SIGUSR1. After SIGTERM the owner, signal and
 * flags read back as set, and writing to the pipe makes the kernel send SIGUSR1 to the
 * process (delivered before write() returns to it).
 */
#include "zoo.h"

static volatile sig_atomic_t got_usr1;

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1++;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	int p[2], fl;

	zoo_init(argc, argv);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		zoo_die("sigaction");
	if (pipe(p))
		zoo_die("pipe");
	if (fcntl(p[0], F_SETOWN, getpid()) || fcntl(p[0], F_SETSIG, SIGUSR1) ||
	    fcntl(p[0], F_SETFL, O_ASYNC | O_NONBLOCK))
		zoo_die("fcntl");
	zoo_ready();
	if (zoo_corrupt)
		fcntl(p[0], F_SETFL, O_NONBLOCK);
	zoo_wait();

	ZOO_CHECK(fcntl(p[0], F_GETOWN) == getpid(), "owner is %d", fcntl(p[0], F_GETOWN));
	ZOO_CHECK(fcntl(p[0], F_GETSIG) == SIGUSR1, "signal is %d", fcntl(p[0], F_GETSIG));
	fl = fcntl(p[0], F_GETFL);
	ZOO_CHECK((fl & (O_ASYNC | O_NONBLOCK)) == (O_ASYNC | O_NONBLOCK), "flags %#x", fl);
	if (write(p[1], "x", 1) != 1)
		zoo_fail("write: %s", strerror(errno));
	ZOO_CHECK(got_usr1 == 1, "SIGUSR1 seen %d times after the write, want 1", (int)got_usr1);
	return zoo_done();
}
