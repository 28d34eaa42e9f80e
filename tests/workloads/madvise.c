/* madvise flags that show in VmFlags: MADV_DONTFORK (dc), MADV_HUGEPAGE (hg),
 * MADV_NOHUGEPAGE (nh), MADV_DONTDUMP (dd), MADV_WIPEONFORK (wf), one area each; contents
 * kept. Three items per area: its vma has its flag, has none of the others, and its
 * contents are intact. */
#include "zoo.h"
#include <sys/mman.h>

#define LEN (4ul << 20)

static const struct {
	int advice;
	const char *flag;
} adv[] = {
	{MADV_DONTFORK, "dc"}, {MADV_HUGEPAGE, "hg"},   {MADV_NOHUGEPAGE, "nh"},
	{MADV_DONTDUMP, "dd"}, {MADV_WIPEONFORK, "wf"},
};

#define N (sizeof(adv) / sizeof(adv[0]))
#define ADVISED(i) (3 * (int)(i) + 1)
#define ONLY(i) (3 * (int)(i) + 2)
#define CONTENTS(i) (3 * (int)(i) + 3)
#define ITEMS (3 * (int)N)

/* The VmFlags line of the vma starting at addr, in out. */
static int vmflags(void *addr, char *out, size_t cap)
{
	char line[1024];
	FILE *f = fopen("/proc/self/smaps", "r");
	unsigned long start, end;
	int in = 0, found = 0;

	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = start == (unsigned long)addr;
		else if (in && strncmp(line, "VmFlags:", 8) == 0) {
			snprintf(out, cap, "%s", line + 8);
			found = 1;
			in = 0;
		}
	}
	if (f)
		fclose(f);
	return found;
}

static int has_flag(const char *flags, const char *f)
{
	char pat[8];

	snprintf(pat, sizeof(pat), " %s", f);
	return strstr(flags, pat) != NULL;
}

int main(int argc, char **argv)
{
	unsigned char *areas[N];
	uint64_t hashes[N];
	char flags[1024];
	size_t i, j;

	zoo_init(argc, argv, ITEMS);
	for (i = 0; i < N; i++) {
		/* 2 MiB aligned, so a huge page is possible where advised. */
		unsigned char *m = mmap(NULL, LEN + (2ul << 20), PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (m == MAP_FAILED)
			zoo_die("mmap");
		areas[i] = (unsigned char *)(((uintptr_t)m + (2ul << 20) - 1) & ~((2ul << 20) - 1));
		if (madvise(areas[i], LEN, adv[i].advice))
			zoo_die(adv[i].flag);
		zoo_fill(areas[i], LEN, i + 10);
		hashes[i] = zoo_hash(areas[i], LEN);
	}

	zoo_ready();
	for (i = 0; i < N; i++) {
		if (ZOO_BREAK(ADVISED(i))) {
			/* The same contents in a fresh mapping, without the advice. */
			if (mmap(areas[i], LEN, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != areas[i])
				zoo_die("mmap");
			zoo_fill(areas[i], LEN, i + 10);
		}
		if (ZOO_BREAK(ONLY(i)) && madvise(areas[i], LEN, i == 3 ? MADV_DONTFORK : MADV_DONTDUMP))
			zoo_die("madvise");
		if (ZOO_BREAK(CONTENTS(i)))
			areas[i][LEN / 3] ^= 1;
	}
	zoo_wait();

	for (i = 0; i < N; i++) {
		ZOO_CHECK(CONTENTS(i), zoo_hash(areas[i], LEN) == hashes[i],
			  "contents at %p (%s) differ", (void *)areas[i], adv[i].flag);
		if (!vmflags(areas[i], flags, sizeof(flags))) {
			zoo_fail(ADVISED(i), "no vma at %p for %s", (void *)areas[i], adv[i].flag);
			continue;
		}
		ZOO_CHECK(ADVISED(i), has_flag(flags, adv[i].flag), "vma at %p lost %s:%s",
			  (void *)areas[i], adv[i].flag, flags);
		for (j = 0; j < N; j++)
			if (j != i)
				ZOO_CHECK(ONLY(i), !has_flag(flags, adv[j].flag),
					  "vma at %p gained %s:%s", (void *)areas[i], adv[j].flag,
					  flags);
	}
	return zoo_done();
}
