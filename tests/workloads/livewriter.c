/* Memory written all the time, for snapshots taken while it runs (`crs dump -R --live`).
 * A writer thread writes a page of 64 MiB every 20 us, the page for count c chosen by a
 * hash of c: it gets header (c, t) — c the count of pages written so far, t the
 * CLOCK_REALTIME of the write — and a body that follows from (index, c, t). After SIGTERM
 * the writer stops and every page must be whole (body as its header says), belong where
 * it is (the hash of its count is its index), hold a count the writer reached, and the
 * times must grow with the counts. A restore from a snapshot that mixed memory from after
 * the freeze with memory from before breaks the last two: a page written after the freeze
 * holds a count the restored writer has not reached, or a time older than the restored
 * writer's pages of smaller counts (which the random order rarely overwrites). */
#include "zoo.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

enum {
	PAGES_WHOLE = 1, /* every page's body is what its header says */
	PAGES_IN_ORDER,  /* counts and times agree with one sequence of writes */
	ITEMS = PAGES_IN_ORDER
};

#define NPAGES (64 * 256)
#define PAGE 4096

static unsigned char *mem;
static _Atomic uint64_t count; /* pages written */
static atomic_int stop;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fill(unsigned char *p, uint64_t index, uint64_t c, uint64_t t)
{
	uint64_t *w = (uint64_t *)p;
	size_t i;

	w[0] = c;
	w[1] = t;
	for (i = 2; i < PAGE / 8; i++)
		w[i] = index * 0x9e3779b97f4a7c15ull ^ c * 31 ^ t ^ i;
}

static int whole(const unsigned char *p, uint64_t index)
{
	const uint64_t *w = (const uint64_t *)p;
	size_t i;

	for (i = 2; i < PAGE / 8; i++)
		if (w[i] != (index * 0x9e3779b97f4a7c15ull ^ w[0] * 31 ^ w[1] ^ i))
			return 0;
	return 1;
}

/* The page count `c` goes to. */
static uint64_t target(uint64_t c)
{
	uint64_t z = c + 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (z ^ (z >> 31)) % NPAGES;
}

static void *writer(void *arg)
{
	struct timespec gap = { 0, 20000 };

	(void)arg;
	while (!atomic_load(&stop)) {
		uint64_t c = atomic_load(&count) + 1;

		fill(mem + target(c) * PAGE, target(c), c, now_ns());
		atomic_store(&count, c);
		nanosleep(&gap, NULL);
	}
	return NULL;
}

struct seen {
	uint64_t c, t;
};

static int by_count(const void *a, const void *b)
{
	const struct seen *x = a, *y = b;

	return x->c < y->c ? -1 : x->c > y->c;
}

int main(int argc, char **argv)
{
	static struct seen seen[NPAGES];
	uint64_t i, c_end, bad_whole = 0, bad_order = 0, n = 0;
	pthread_t th;

	zoo_init(argc, argv, ITEMS);
	mem = mmap(NULL, (size_t)NPAGES * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		zoo_die("mmap");
	for (i = 0; i < NPAGES; i++)
		fill(mem + i * PAGE, i, 0, 0);
	if (pthread_create(&th, NULL, writer, NULL))
		zoo_die("pthread_create");
	zoo_ready();
	zoo_wait();
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	if (ZOO_BREAK(PAGES_WHOLE))
		mem[7 * PAGE + 100] ^= 1;
	if (ZOO_BREAK(PAGES_IN_ORDER)) {
		/* A page from "later": a count beyond the final one. */
		uint64_t c = atomic_load(&count) + 1000;

		fill(mem + target(c) * PAGE, target(c), c, now_ns());
	}

	c_end = atomic_load(&count);
	for (i = 0; i < NPAGES; i++) {
		const uint64_t *w = (const uint64_t *)(mem + i * PAGE);

		if (!whole(mem + i * PAGE, i))
			bad_whole++;
		/* A count the writer reached, and that goes to page i. */
		if (w[0] != 0 && (target(w[0]) != i || w[0] > c_end))
			bad_order++;
		if (w[0] != 0)
			seen[n++] = (struct seen){ w[0], w[1] };
	}
	qsort(seen, n, sizeof(seen[0]), by_count);
	for (i = 1; i < n; i++)
		if (seen[i].t < seen[i - 1].t)
			bad_order++;
	ZOO_CHECK(PAGES_WHOLE, bad_whole == 0, "%llu pages are not whole",
		  (unsigned long long)bad_whole);
	ZOO_CHECK(PAGES_IN_ORDER, bad_order == 0,
		  "%llu pages disagree with one sequence of writes (final count %llu)",
		  (unsigned long long)bad_order, (unsigned long long)c_end);
	return zoo_done();
}
