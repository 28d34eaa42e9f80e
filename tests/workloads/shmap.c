/* File mappings: MAP_SHARED of a whole file and of a range at an offset (writes reach the
 * file), and MAP_PRIVATE of another file with copy-on-write pages (writes do not). */
#include "zoo.h"
#include <sys/mman.h>

#define PG 4096
#define FLEN (256 * PG)

static unsigned char expect[FLEN];

static void make_file(const char *p, size_t len, uint64_t seed, int *fdp)
{
	unsigned char *buf = malloc(len);
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (!buf || fd < 0)
		zoo_die("create file");
	zoo_fill(buf, len, seed);
	if (write(fd, buf, len) != (ssize_t)len)
		zoo_die("write file");
	free(buf);
	*fdp = fd;
}

int main(int argc, char **argv)
{
	char *sp, *pp;
	static unsigned char back[FLEN], orig_priv[FLEN];
	unsigned char *sh, *shoff, *pv;
	int sfd, pfd, i;
	uint64_t pv_hash;

	zoo_init(argc, argv);
	sp = zoo_path("shared.bin");
	pp = zoo_path("private.bin");
	make_file(sp, FLEN, 5, &sfd);
	make_file(pp, FLEN, 6, &pfd);
	if (pread(sfd, expect, FLEN, 0) != FLEN || pread(pfd, orig_priv, FLEN, 0) != FLEN)
		zoo_die("pread");
	sh = mmap(NULL, FLEN, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
	shoff = mmap(NULL, 32 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 64 * PG);
	pv = mmap(NULL, FLEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, pfd, 0);
	if (sh == MAP_FAILED || shoff == MAP_FAILED || pv == MAP_FAILED)
		zoo_die("mmap");
	close(sfd);
	close(pfd); /* the mappings keep the files */
	for (i = 0; i < FLEN; i += 3 * PG)
		sh[i + 17] = expect[i + 17] = (unsigned char)(i / PG);
	shoff[5 * PG] = expect[69 * PG] = 0xee; /* through the offset mapping */
	for (i = 0; i < FLEN; i += 2 * PG)
		pv[i + 3] ^= 0xff; /* COW: private copies of half the pages */
	(void)pv[PG + 1];          /* read-only touched page: still the file's */
	pv_hash = zoo_hash(pv, FLEN);

	zoo_ready();
	if (zoo_corrupt)
		sh[PG * 10] ^= 1;
	zoo_wait();

	ZOO_CHECK(memcmp(sh, expect, FLEN) == 0, "shared mapping contents differ");
	ZOO_CHECK(shoff[5 * PG] == 0xee && sh[69 * PG] == 0xee,
		  "the two shared mappings no longer share pages");
	sfd = open(sp, O_RDWR);
	ZOO_CHECK(sfd >= 0 && pread(sfd, back, FLEN, 0) == FLEN && memcmp(back, expect, FLEN) == 0,
		  "shared.bin contents differ from what was written through the mapping");
	sh[100] = 0x5a;
	ZOO_CHECK(pread(sfd, back, 1, 100) == 1 && back[0] == 0x5a,
		  "a write through the restored shared mapping is not in the file");
	shoff[0] = 0xa5;
	ZOO_CHECK(sh[64 * PG] == 0xa5, "offset mapping not at file offset 64 pages");

	ZOO_CHECK(zoo_hash(pv, FLEN) == pv_hash, "private file mapping contents differ");
	pfd = open(pp, O_RDONLY);
	ZOO_CHECK(pfd >= 0 && pread(pfd, back, FLEN, 0) == FLEN &&
			  memcmp(back, orig_priv, FLEN) == 0,
		  "private.bin changed on disk");
	return zoo_done();
}
