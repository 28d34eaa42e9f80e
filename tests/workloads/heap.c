/* 8 MiB of checksummed malloc heap plus 2000 small brk-heap blocks, and the brk itself. */
#include "zoo.h"

#define BIG (8u << 20)
#define NSMALL 2000

enum { BIG_BLOCK = 1, SMALL_BLOCKS, BRK, ITEMS = BRK };

int main(int argc, char **argv)
{
	static unsigned char *small[NSMALL];
	static size_t small_len[NSMALL];
	static uint64_t small_hash[NSMALL];
	uint64_t s = 42, big_hash;
	unsigned char *big;
	void *brk0;
	int i;

	zoo_init(argc, argv, ITEMS);
	big = malloc(BIG);
	if (!big)
		zoo_die("malloc 8 MiB");
	zoo_fill(big, BIG, 0x8b8b);
	big_hash = zoo_hash(big, BIG);
	for (i = 0; i < NSMALL; i++) {
		small_len[i] = 16 + zoo_rand(&s) % 4000;
		small[i] = malloc(small_len[i]);
		if (!small[i])
			zoo_die("malloc small");
		zoo_fill(small[i], small_len[i], (uint64_t)i * 7919 + 1);
		small_hash[i] = zoo_hash(small[i], small_len[i]);
	}
	/* Free every third block: the heap has holes with malloc metadata in them. */
	for (i = 0; i < NSMALL; i += 3) {
		free(small[i]);
		small[i] = NULL;
	}
	brk0 = sbrk(0);

	zoo_ready();
	if (ZOO_BREAK(BIG_BLOCK))
		big[BIG / 2] ^= 0x40;
	if (ZOO_BREAK(SMALL_BLOCKS))
		small[1][0] ^= 1; /* block 1 is not one of the freed */
	if (ZOO_BREAK(BRK) && sbrk(4096) == (void *)-1)
		zoo_die("sbrk");
	zoo_wait();

	ZOO_CHECK(BIG_BLOCK, zoo_hash(big, BIG) == big_hash, "8 MiB heap block checksum changed");
	for (i = 0; i < NSMALL; i++)
		if (small[i])
			ZOO_CHECK(SMALL_BLOCKS, zoo_hash(small[i], small_len[i]) == small_hash[i],
				  "small block %d (%zu bytes at %p) changed", i, small_len[i],
				  (void *)small[i]);
	ZOO_CHECK(BRK, sbrk(0) == brk0, "brk moved: %p -> %p", brk0, sbrk(0));
	/* The allocator must still work on the restored heap. Not an item: the workload cannot
	 * make malloc fail without damaging its metadata, and then malloc aborts. */
	for (i = 0; i < NSMALL; i += 3) {
		small[i] = malloc(100);
		ZOO_CHECK(ZOO_UNBREAKABLE, small[i] != NULL, "malloc after restore");
		if (small[i])
			memset(small[i], 0xab, 100);
	}
	return zoo_done();
}
