/* Memory that keeps changing between dumps, for incremental dumps (pre-dump chains): 16 MiB
 * of private anonymous pages, each holding its index and the generation it was last
 * written in, and a table of those generations. Each SIGUSR1 starts a new generation and
 * rewrites a quarter of the pages (a different quarter each time), plus a few pages of a
 * mapping made for that generation. After SIGTERM every page must hold what the table
 * says: the memory is one consistent snapshot, whichever images each page came from. */
#include "zoo.h"
#include <sys/mman.h>

enum {
	PAGES_MATCH = 1, /* every page holds its index and the generation the table says */
	ITEMS = PAGES_MATCH
};

#define NPAGES 4096
#define PAGE 4096

static volatile sig_atomic_t rounds_asked;

static void on_usr1(int sig)
{
	(void)sig;
	rounds_asked++;
}

static void fill(unsigned char *p, uint64_t index, uint64_t gen)
{
	size_t i;

	memcpy(p, &index, 8);
	memcpy(p + 8, &gen, 8);
	for (i = 16; i < PAGE; i++)
		p[i] = (unsigned char)(index * 7 + gen * 13 + i);
}

static int holds(const unsigned char *p, uint64_t index, uint64_t gen)
{
	unsigned char want[PAGE];

	fill(want, index, gen);
	return memcmp(p, want, PAGE) == 0;
}

int main(int argc, char **argv)
{
	static uint64_t gen_of[NPAGES];
	unsigned char *mem, *extra[8] = { 0 };
	uint64_t gen = 0, i, bad = 0, first_bad = 0;
	struct sigaction sa;
	sigset_t usr1, old;

	zoo_init(argc, argv, ITEMS);
	mem = mmap(NULL, (size_t)NPAGES * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		zoo_die("mmap");
	for (i = 0; i < NPAGES; i++)
		fill(mem + i * PAGE, i, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		zoo_die("sigaction");
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &old);

	zoo_ready();
	if (ZOO_BREAK(PAGES_MATCH))
		mem[123 * PAGE + 100] ^= 1;
	/* Rounds until SIGTERM: SIGUSR1 and SIGTERM both end the wait. */
	for (;;) {
		sigset_t wait_mask = old;

		sigdelset(&wait_mask, SIGUSR1);
		sigdelset(&wait_mask, SIGTERM);
		while (!zoo_term && rounds_asked == 0)
			sigsuspend(&wait_mask);
		if (zoo_term)
			break;
		rounds_asked--;
		gen++;
		for (i = gen % 4; i < NPAGES; i += 4) {
			fill(mem + i * PAGE, i, gen);
			gen_of[i] = gen;
		}
		if (gen <= 8) {
			extra[gen - 1] = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
					      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (extra[gen - 1] == MAP_FAILED)
				zoo_die("mmap extra");
			for (i = 0; i < 4; i++)
				fill(extra[gen - 1] + i * PAGE, 100000 + i, gen);
		}
	}

	for (i = 0; i < NPAGES; i++)
		if (!holds(mem + i * PAGE, i, gen_of[i]) && bad++ == 0)
			first_bad = i;
	for (i = 0; i < 8 && i < gen; i++) {
		uint64_t k;

		for (k = 0; k < 4; k++)
			if (!holds(extra[i] + k * PAGE, 100000 + k, i + 1) && bad++ == 0)
				first_bad = 1000000 + i * 4 + k;
	}
	ZOO_CHECK(PAGES_MATCH, bad == 0,
		  "%llu pages do not hold what the table says (first: %llu), generation %llu",
		  (unsigned long long)bad, (unsigned long long)first_bad, (unsigned long long)gen);
	return zoo_done();
}
