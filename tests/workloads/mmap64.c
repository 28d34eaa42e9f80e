/* 64 MiB of anonymous private memory, half of it touched (checksummed), half never
 * touched (must read back as zero), plus a 1 MiB region filled with zero pages written
 * explicitly. */
#include "zoo.h"
#include <sys/mman.h>

#define SIZE (64ul << 20)
#define CHUNK (64ul << 10)

enum {
	DATA = 1,      /* the even chunks: written, checksummed */
	NEVER_TOUCHED, /* odd chunks never touched: zero */
	ZERO_WRITTEN,  /* odd chunks with c % 7 == 1: written with zeros */
	ITEMS = ZERO_WRITTEN
};

int main(int argc, char **argv)
{
	unsigned char *m;
	uint64_t hashes[SIZE / CHUNK];
	size_t c, i;

	zoo_init(argc, argv, ITEMS);
	m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		zoo_die("mmap 64 MiB");
	for (c = 0; c < SIZE / CHUNK; c++) {
		if (c % 2 == 0) {
			zoo_fill(m + c * CHUNK, CHUNK, c + 1);
			hashes[c] = zoo_hash(m + c * CHUNK, CHUNK);
		} else if (c % 7 == 1) {
			memset(m + c * CHUNK, 0, CHUNK); /* present, but zero */
		}
	}

	zoo_ready();
	if (ZOO_BREAK(DATA))
		m[2 * CHUNK + 5] ^= 1;
	if (ZOO_BREAK(NEVER_TOUCHED))
		m[3 * CHUNK + 5] = 1;
	if (ZOO_BREAK(ZERO_WRITTEN))
		m[1 * CHUNK + 5] = 1;
	zoo_wait();

	for (c = 0; c < SIZE / CHUNK; c++) {
		if (c % 2 == 0) {
			ZOO_CHECK(DATA, zoo_hash(m + c * CHUNK, CHUNK) == hashes[c],
				  "chunk %zu at %p changed", c, (void *)(m + c * CHUNK));
			continue;
		}
		for (i = 0; i < CHUNK; i++)
			if (m[c * CHUNK + i]) {
				zoo_fail(c % 7 == 1 ? ZERO_WRITTEN : NEVER_TOUCHED,
					 "zero chunk %zu has byte %#x at offset %zu", c,
					 m[c * CHUNK + i], i);
				break;
			}
	}
	return zoo_done();
}
