/* File mappings: MAP_SHARED of a whole file and of a range at an offset (writes reach the
 * file), and MAP_PRIVATE of another file with copy-on-write pages (writes do not). */
#include "zoo.h"
#include <sys/mman.h>

#define PG 4096
#define FLEN (256 * PG)

enum {
	SHARED_CONTENT = 1, /* the shared mapping and its file hold what was written */
	OFFSET_MAPPING,     /* the offset mapping shares the file's pages at 64 pages */
	WRITE_REACHES_FILE, /* a write through the shared mapping is in the file at its path */
	PRIVATE_CONTENT,    /* the private mapping: file pages and its own copies */
	PRIVATE_FILE,       /* private.bin unchanged on disk */
	ITEMS = PRIVATE_FILE
};

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

	zoo_init(argc, argv, ITEMS);
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
	if (ZOO_BREAK(SHARED_CONTENT))
		sh[PG * 10] ^= 1;
	if (ZOO_BREAK(OFFSET_MAPPING)) {
		/* A private mapping of the same range instead: the same bytes, not shared. */
		sfd = open(sp, O_RDWR);
		if (mmap(shoff, 32 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, sfd,
			 64 * PG) != shoff)
			zoo_die("remap the offset mapping");
		close(sfd);
	}
	if (ZOO_BREAK(WRITE_REACHES_FILE)) {
		/* The path names a copy now: the same bytes, another file. */
		if (rename(sp, zoo_path("shared.old")))
			zoo_die("move shared.bin");
		sfd = open(sp, O_RDWR | O_CREAT | O_EXCL, 0600);
		if (sfd < 0 || pwrite(sfd, sh, FLEN, 0) != FLEN)
			zoo_die("copy shared.bin");
		close(sfd);
	}
	if (ZOO_BREAK(PRIVATE_CONTENT))
		pv[3] ^= 1;
	if (ZOO_BREAK(PRIVATE_FILE)) {
		/* Page 0 has a private copy in the private mapping: the mapping stays. */
		pfd = open(pp, O_RDWR);
		if (pfd < 0 || pwrite(pfd, "x", 1, 100) != 1)
			zoo_die("write private.bin");
		close(pfd);
	}
	zoo_wait();

	sfd = open(sp, O_RDWR);
	ZOO_CHECK(SHARED_CONTENT,
		  memcmp(sh, expect, FLEN) == 0 && sfd >= 0 && pread(sfd, back, FLEN, 0) == FLEN &&
			  memcmp(back, expect, FLEN) == 0,
		  "the shared mapping or shared.bin differs from what was written through it");
	ZOO_CHECK(OFFSET_MAPPING, shoff[5 * PG] == 0xee && sh[69 * PG] == 0xee && (shoff[0] = 0xa5) &&
				  sh[64 * PG] == 0xa5,
		  "the offset mapping does not share the file's pages at 64 pages");
	sh[100] = 0x5a;
	ZOO_CHECK(WRITE_REACHES_FILE, pread(sfd, back, 1, 100) == 1 && back[0] == 0x5a,
		  "a write through the restored shared mapping is not in the file");

	ZOO_CHECK(PRIVATE_CONTENT, zoo_hash(pv, FLEN) == pv_hash,
		  "private file mapping contents differ");
	pfd = open(pp, O_RDONLY);
	ZOO_CHECK(PRIVATE_FILE,
		  pfd >= 0 && pread(pfd, back, FLEN, 0) == FLEN && memcmp(back, orig_priv, FLEN) == 0,
		  "private.bin changed on disk");
	return zoo_done();
}
