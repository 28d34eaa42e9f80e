/* A CPU-bound loop: the dump stops it in user code, between any two instructions, with
 * the running state only in registers. After SIGTERM the result is recomputed. */
#include "zoo.h"

#define TBL (1u << 16)

enum { INT_STATE = 1, FP_STATE, ITEMS = FP_STATE };

static uint32_t table[TBL];

static inline uint64_t step(uint64_t x, uint32_t t, uint64_t n)
{
	x ^= t;
	x *= 0x9E3779B97F4A7C15ULL;
	x = (x << 23) | (x >> 41);
	return x + n;
}

int main(int argc, char **argv)
{
	uint64_t x = 1, y = 1, n = 0, i;
	double d = 0, e = 0;

	zoo_init(argc, argv, ITEMS);
	zoo_fill(table, sizeof(table), 31337);
	zoo_unblock_term();
	zoo_ready();
	while (!zoo_term) {
		uint32_t t = table[n & (TBL - 1)];

		x = step(x, t, n);
		d += (double)(t & 0xffff) * 0.5;
		n++;
	}
	/* The loop's state lives in registers: it is broken once the loop is left. */
	if (ZOO_BREAK(INT_STATE))
		x ^= 1;
	if (ZOO_BREAK(FP_STATE))
		d += 0.5;
	for (i = 0; i < n; i++) {
		uint32_t t = table[i & (TBL - 1)];

		y = step(y, t, i);
		e += (double)(t & 0xffff) * 0.5;
	}
	fprintf(stderr, "%llu iterations\n", (unsigned long long)n);
	ZOO_CHECK(INT_STATE, x == y, "integer state %#llx, recomputed %#llx after %llu iterations",
		  (unsigned long long)x, (unsigned long long)y, (unsigned long long)n);
	ZOO_CHECK(FP_STATE, d == e, "floating state %.17g, recomputed %.17g", d, e);
	return zoo_done();
}
