/* An alternate signal stack and an SA_ONSTACK handler that must run on it. */
#include "zoo.h"
#include <sys/mman.h>

#define SS_LEN (64 * 1024)

enum {
	STACK = 1, /* sigaltstack() reports the stack as set */
	HANDLER,   /* the SA_ONSTACK handler runs on it and sees SS_ONSTACK */
	ITEMS = HANDLER
};

static volatile uintptr_t handler_sp;
static volatile int handler_onstack;

static void on_usr1(int sig)
{
	stack_t cur;
	int local;

	(void)sig;
	handler_sp = (uintptr_t)&local;
	if (sigaltstack(NULL, &cur) == 0)
		handler_onstack = cur.ss_flags & SS_ONSTACK;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	stack_t ss, got;
	void *mem;

	zoo_init(argc, argv, ITEMS);
	mem = mmap(NULL, SS_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		zoo_die("mmap");
	ss.ss_sp = mem;
	ss.ss_size = SS_LEN;
	ss.ss_flags = 0;
	if (sigaltstack(&ss, NULL))
		zoo_die("sigaltstack");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR1, &sa, NULL);

	zoo_ready();
	if (ZOO_BREAK(STACK)) {
		/* Smaller: the handler still runs in it. */
		ss.ss_size = SS_LEN - 4096;
		sigaltstack(&ss, NULL);
	}
	if (ZOO_BREAK(HANDLER)) {
		sa.sa_flags = 0;
		sigaction(SIGUSR1, &sa, NULL);
	}
	zoo_wait();

	ZOO_CHECK(STACK,
		  sigaltstack(NULL, &got) == 0 && got.ss_sp == mem && got.ss_size == SS_LEN &&
			  got.ss_flags == 0,
		  "sigaltstack is %p+%zu flags %#x, want %p+%d flags 0", got.ss_sp, got.ss_size,
		  got.ss_flags, mem, SS_LEN);
	raise(SIGUSR1);
	ZOO_CHECK(HANDLER,
		  handler_sp > (uintptr_t)mem && handler_sp < (uintptr_t)mem + SS_LEN &&
			  handler_onstack,
		  "handler ran at sp %#lx (SS_ONSTACK %d), outside the alternate stack %p",
		  (unsigned long)handler_sp, handler_onstack, mem);
	return zoo_done();
}
